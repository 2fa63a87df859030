"""Finding the launched R (`xrtop record -- Rscript ...`) before its loader mapped libR.so."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sampler.symbols import needs_libr


def test_an_r_built_with_libr_is_told_from_a_static_one() -> None:
    # R's binary that needs libR.so is R only once libR is mapped (CI once attached to it
    # between the loader's mapping of libc and libR, and found no R_GlobalContext there).
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed")
    r_binary = Path(rscript).resolve().parent.parent / "lib" / "R" / "bin" / "exec" / "R"
    if not r_binary.exists():
        r_binary = Path("/usr/lib/R/bin/exec/R")
    if not r_binary.exists():
        pytest.skip("no R binary at a known place")
    assert needs_libr(str(r_binary))
    # A binary that needs no libR (as a static R), and a file that cannot be read
    assert not needs_libr(sys.executable)
    assert not needs_libr("/nonexistent/R")
