"""The architecture, enforced: sampler imports nothing of ours or of the UI toolkits;
widgets import only sampler's data model; xrtop wires everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
UI = {"textual", "rich"}


def imports_of(package: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(file, imported module) for every absolute import in a package under `root`."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        name = str(path.relative_to(root))
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((name, node.module))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def sampler_violations(root: Path = ROOT) -> list[tuple[str, str]]:
    """Imports of sampler/ that reach the UI toolkits, widgets or xrtop."""
    return [(f, m) for f, m in imports_of("sampler", root) if top(m) in UI | {"widgets", "xrtop"}]


def widgets_violations(root: Path = ROOT) -> list[tuple[str, str]]:
    """Imports of widgets/ that reach xrtop, or any of sampler but its data model."""
    return [
        (f, m)
        for f, m in imports_of("widgets", root)
        if top(m) == "xrtop" or (top(m) == "sampler" and m != "sampler.model")
    ]


def test_sampler_imports_no_ui_and_nothing_of_ours() -> None:
    assert sampler_violations() == []


def test_widgets_import_only_the_data_model_of_sampler() -> None:
    assert widgets_violations() == []


def assert_checker_sees_imports(package: str, root: Path = ROOT) -> None:
    """The rules are only worth something if the import reader finds imports at all."""
    assert imports_of(package, root) != [], f"no import found in {root / package}"


@pytest.mark.parametrize("package", ["sampler", "widgets", "xrtop"])
def test_checker_sees_imports(package: str) -> None:
    # each package imports something (widgets at least textual and sampler.model)
    assert_checker_sees_imports(package)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_rules_fail_on_a_bad_tree(tmp_path: Path) -> None:
    # GIVEN a tree whose sampler imports the UI and the app, and whose widgets reach past
    # sampler's data model
    files = {
        "sampler/reader.py": "import textual\nfrom widgets.status import x\n",
        "sampler/sub/deep.py": "def f() -> None:\n    import xrtop.cli\n",
        "widgets/view.py": (
            "from __future__ import annotations\n"
            "from sampler.model import SampleLog\n"
            "from sampler.rstack import StackReader\n"
            "import sampler\n"
            "from . import sibling\n"
        ),
        "widgets/app_link.py": "from xrtop import app\n",
    }
    write_tree(tmp_path, files)
    # THEN every bad import is reported, nested and function-level ones too, and nothing else
    assert sampler_violations(tmp_path) == [
        ("sampler/reader.py", "textual"),
        ("sampler/reader.py", "widgets.status"),
        ("sampler/sub/deep.py", "xrtop.cli"),
    ]
    assert widgets_violations(tmp_path) == [
        ("widgets/app_link.py", "xrtop"),
        ("widgets/view.py", "sampler.rstack"),
        ("widgets/view.py", "sampler"),
    ]


@pytest.mark.parametrize("package", ["sampler", "widgets", "xrtop"])
def test_the_self_check_fails_when_no_import_is_found(package: str, tmp_path: Path) -> None:
    # GIVEN a tree in which `package` has code but no import (or no file at all)
    write_tree(tmp_path, {f"{package}/__init__.py": "VALUE = 1\n", "other/x.py": "import os\n"})
    # THEN the self-check fails for it, and passes for a package that imports
    with pytest.raises(AssertionError, match="no import found"):
        assert_checker_sees_imports(package, tmp_path)
    with pytest.raises(AssertionError, match="no import found"):
        assert_checker_sees_imports("missing", tmp_path)
    assert_checker_sees_imports("other", tmp_path)
