"""Which of the live view's keys work now, and so show in the footer (`key_available`).

Kept apart from `xrtop.app` (the Textual app) because it is plain logic over the source
shown: tested with plain calls.
"""

from __future__ import annotations

from sampler.thread import State
from xrtop.sources import ProfileSource

#: Keys that need something shown (a source), whatever it is.
_WITH_A_SOURCE = ("save", "export", "pause", "by_line", "window")


def key_available(action: str, source: ProfileSource | None, several_processes: bool) -> bool:
    """Whether the key bound to `action` works with `source` shown (None: nothing yet,
    e.g. while picking) and, when `several_processes`, a process list to choose from.
    Live-only keys (reset, rate, pick) do not work on a file."""
    live = source is not None and source.live
    if action == "reset":
        return live
    if action == "rate":  # only while there is something to sample
        return live and source is not None and source.state() is State.RUNNING
    if action in _WITH_A_SOURCE:
        return source is not None
    if action == "toggle_idle":  # a file marks no sample idle: nothing to toggle
        return source is not None and source.idle_known
    if action == "show_picker":
        return source is None or live
    if action == "show_process":
        return several_processes
    return True
