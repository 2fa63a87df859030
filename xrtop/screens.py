"""The live view's modal screens: the key help, and one-key questions (export format,
save before quitting or picking another process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from xrtop.formats import FORMATS


class HelpScreen(ModalScreen[None]):
    """Every key, in one table; any of escape, q, ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        """Show `keys`: (key, what it does) pairs."""
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        """The key table."""
        width = max(len(k) for k, _ in self.keys)
        lines = [f"{key:>{width}}  {what}" for key, what in self.keys]
        box = Vertical(id="help-box")
        # Title and hint in the border: every row inside is a key (all fit in 24 rows).
        box.border_title = "xrtop keys"
        box.border_subtitle = "escape closes"
        with box:
            yield Static("\n".join(lines), id="help-body", markup=False)

    def action_close(self) -> None:
        """Back to the view."""
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str]):
    """A one-line question answered by a key; dismisses with the chosen key's value."""

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        """`choices` are (key, label, value); escape gives "cancel"."""
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        """The question and the keys."""
        keys = "   ".join(f"[b]{key}[/b] {label}" for key, label, _ in self.choices)
        with Vertical(id="choice-box"):
            yield Static(self.question, id="choice-question", markup=False)
            yield Static(keys + "   [b]escape[/b] cancel", id="choice-keys")

    def on_key(self, event: events.Key) -> None:
        """Answer with the pressed key's value."""
        key = event.key
        event.stop()
        for k, _, value in self.choices:
            if key == k:
                self.dismiss(value)
                return
        if key == "escape":
            self.dismiss("cancel")


def export_prompt() -> ChoiceScreen:
    """Which format to export to: every format with an export key; dismisses with its name."""
    choices = [(f.export_key, f.label, f.name) for f in FORMATS.values() if f.export_key]
    return ChoiceScreen("Export the samples as:", choices)


def save_first_prompt(question: str, verb: str) -> ChoiceScreen:
    """Before samples would be lost: dismisses with "save" (save, then `verb`), "go"
    (`verb` without saving) or "cancel"."""
    return ChoiceScreen(question, [("s", f"save and {verb}", "save"), (verb[0], verb, "go")])
