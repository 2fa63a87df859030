"""The architecture, enforced: sampler imports nothing of ours or of the UI toolkits;
widgets import only sampler's data model; xrtop wires everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
UI = {"textual", "rich"}


def imports_of(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in a package."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path.name, node.module))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def test_sampler_imports_no_ui_and_nothing_of_ours() -> None:
    bad = [(f, m) for f, m in imports_of("sampler") if top(m) in UI | {"widgets", "xrtop"}]
    assert bad == []


def test_widgets_import_only_the_data_model_of_sampler() -> None:
    bad = [
        (f, m)
        for f, m in imports_of("widgets")
        if top(m) == "xrtop" or (top(m) == "sampler" and m != "sampler.model")
    ]
    assert bad == []


@pytest.mark.parametrize("package", ["sampler", "widgets", "xrtop"])
def test_checker_sees_imports(package: str) -> None:
    # The rules above are only worth something if the import reader finds imports at all.
    assert imports_of(package) or package == "widgets"
