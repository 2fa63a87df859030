"""The live view's entries in the command palette (ctrl+p): every action that has a key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from xrtop.formats import FORMATS

if TYPE_CHECKING:
    from xrtop.app import XrtopApp


def palette_commands(app: XrtopApp) -> Iterator[SystemCommand]:
    """xrtop's commands for `app`, as its source allows."""
    yield SystemCommand("Save Rprof.out", "Write every sample as Rprof.out", app.action_save)
    for fmt in FORMATS.values():
        if fmt.export_key:
            yield SystemCommand(
                f"Export {fmt.label}", fmt.readers, lambda name=fmt.name: app.save_worker(name)
            )
    yield SystemCommand("Pause / resume display", "Sampling goes on", app.action_pause)
    yield SystemCommand("Toggle by-line aggregation", "Function or line", app.action_by_line)
    source = app.source
    if source is not None and source.idle_known:
        yield SystemCommand(
            "Toggle idle samples",
            "Count the samples where R waits in the percentages, or not",
            app.action_toggle_idle,
        )
    yield SystemCommand(
        "Toggle native frames",
        "C, C++ and Fortran frames (--native)",
        lambda: app.action_frames("native"),
    )
    yield SystemCommand(
        "Toggle evaluator frames",
        "R's own Rf_eval, bcEval... among the native frames",
        lambda: app.action_frames("evaluator"),
    )
    yield SystemCommand("Cycle window", "Cumulative, 10 s, 60 s", app.action_window)
    for tab in app.TABS:
        yield SystemCommand(
            f"Show {tab.title} view", tab.palette, lambda tab=tab: app.action_view(tab.id)
        )
    if app.model.processes is not None:
        yield SystemCommand(
            "Show all processes", "Functions summed over processes", app.action_show_process
        )
    if source is not None and source.live:
        yield SystemCommand("Reset", "Count from now", app.action_reset)
    yield SystemCommand("Keys", "Every key", app.action_help)
