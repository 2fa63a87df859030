"""Builtin frames ("sum", ".C", ".Call", ".External") as R's own Rprof writes them.

R opens a context for a builtin call only while Rprof runs (and, in AST code, for the
foreign builtins), so xrtop recovers them from the byte-code instruction R runs
(sampler.builtins). Ground truth is R's own Rprof on the same workload (tests/r/builtins.R),
in the first half of its run, while xrtop samples it too (R's contexts exist then: no frame
may be doubled); xrtop samples the second half again, with Rprof off (nothing but the
recovery gives builtin frames then).
The .C/.Call/.External code is tests/r/spin.c, built once here with the host's compiler
(it needs no library, so the same file loads in every lab R).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ALL_ENVS
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import RLAB_ROOT
from conftest import REnv
from conftest import RLauncher
from conftest import sample
from conftest import wait_for

from sampler.model import SampleLog
from sampler.rprof import read_rprof
from sampler.target import attach

#: Builtins the workload calls in ways R gives a frame (byte code and AST).
BUILTINS = ("sum", ".C", ".Call", ".External")
#: Each of these takes this share of R's own samples at least, so that a profiler
#: without builtin frames fails the comparison by far.
_SIZABLE = {"sum": 0.08, ".C": 0.2, ".External": 0.04}
#: Largest difference between xrtop's and R's share of samples with one builtin innermost:
#: a few hundred samples each, of two stretches of the same loop.
_SHARE_TOLERANCE = 0.1
_Stacks = Counter[tuple[str, ...]]


@pytest.fixture(scope="module")
def spin_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/r/spin.c built as a shared object without any library."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        if IN_CI:
            pytest.fail("no C compiler for tests/r/spin.c")
        pytest.skip("no C compiler for tests/r/spin.c")
    built = tmp_path_factory.mktemp("spin") / "spin.so"
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-nostdlib", "-o", str(built), R_SCRIPTS / "spin.c"],
        check=True,
    )
    return built


def _root(env: REnv) -> Path:
    return Path("/") if env.suite == "host" else RLAB_ROOT / env.suite


@dataclass(frozen=True)
class Profiles:
    """One run of tests/r/builtins.R sampled by xrtop: while R's Rprof records (R has
    builtin contexts then), after it stopped (R has none: only the recovery gives builtin
    frames), and what R's Rprof recorded."""

    during: _Stacks
    after: _Stacks
    theirs: _Stacks


@pytest.fixture(scope="module", params=ALL_ENVS, ids=lambda e: e.id)
def profiles(
    request: pytest.FixtureRequest, spin_library: Path, tmp_path_factory: pytest.TempPathFactory
) -> Profiles:
    """tests/r/builtins.R in one R of every environment, sampled by xrtop in both of its
    halves (one run serves both tests that read it)."""
    env: REnv = request.param
    root = _root(env)
    token = uuid.uuid4().hex[:8]
    library, rprof, off = (f"/tmp/xrtop-{n}-{token}" for n in ("spin.so", "rprof.out", "off"))
    shutil.copyfile(spin_library, root / library.lstrip("/"))
    launcher = RLauncher(tmp_path_factory.mktemp("builtins"))
    try:
        seconds = 6
        extra = {"XRTOP_SPIN_SO": library, "XRTOP_RPROF": rprof, "XRTOP_RPROF_OFF": off}
        run = launcher.start(
            "builtins.R", str(seconds), env=env, extra_env=extra, timeout=seconds + 60
        )
        target = attach(run.pid)
        during = sample(target, seconds - 1, rate=100)
        # (R closed its Rprof file before it wrote this one)
        wait_for((root / off.lstrip("/")).exists, 30, "R's Rprof to stop")
        after = sample(target, seconds - 1, rate=100)
        theirs = Counter(s.names for s in read_rprof(root / rprof.lstrip("/")).stacks)
    finally:
        launcher.stop_all()
        for inner in (library, rprof, off):
            (root / inner.lstrip("/")).unlink(missing_ok=True)
    return Profiles(_counted(during), _counted(after), theirs)


def _counted(log: SampleLog) -> _Stacks:
    return Counter(s.names for s in log.iter_stacks() if s.names)


def _innermost_shares(stacks: _Stacks) -> dict[str, float]:
    total = sum(stacks.values())
    return {
        name: sum(n for stack, n in stacks.items() if stack[0] == name) / total for name in BUILTINS
    }


def _assert_same_profile(ours: _Stacks, theirs: _Stacks) -> None:
    """xrtop's stacks are R's, and builtins are innermost as often as R writes them."""
    assert sum(ours.values()) > 250
    mine, rs = _innermost_shares(ours), _innermost_shares(theirs)
    for name, least in _SIZABLE.items():
        assert rs[name] >= least, (name, rs)  # else the comparison below proves little
    for name in BUILTINS:
        assert abs(mine[name] - rs[name]) <= _SHARE_TOLERANCE, (name, mine, rs)
    # Every stack xrtop saw often is one R wrote, and every stack R wrote often xrtop saw.
    assert [s for s, n in ours.items() if n >= 0.02 * sum(ours.values()) and s not in theirs] == []
    total = sum(theirs.values())
    assert [s for s, n in theirs.items() if n >= 0.05 * total and s not in ours] == []
    # The code with no builtin frame in R has none in xrtop: unnamed .Call (DOTCALL) and
    # the .Internal under mean.
    assert ("use_call", "round_of_builtins", "run_for") in ours
    assert not [s for s in ours if s[0] == ".Call" and s[1] == "use_call"]
    assert not [s for s in ours if s[1:2] == ("mean.default",) and s[0] in BUILTINS]


@pytest.mark.live
def test_builtin_frames_match_rprof(profiles: Profiles) -> None:
    # GIVEN builtin-heavy code, byte-compiled and not, that R's Rprof recorded for a while
    # WHEN xrtop samples the same code right after, with Rprof off (no builtin contexts)
    ours, theirs = profiles.after, profiles.theirs
    # THEN xrtop writes the builtin frames R writes, as often, on the same stacks
    _assert_same_profile(ours, theirs)
    assert ("sum", "use_sum", "nested", "round_of_builtins", "run_for") in ours
    assert (".C", "use_c", "round_of_builtins", "run_for") in ours
    assert (".C", "ast_c", "round_of_builtins", "run_for") in ours

    # AND the builtin that called R code sits between the frames: R writes `length` twice
    # there, its builtin context and DispatchOrEval's context.
    # Compared from the method outward: what runs inside it (spin_r, or nothing yet in the
    # instant before it calls spin_r) is the sampling's luck, not the builtin's place.
    def from_method(stack: tuple[str, ...]) -> tuple[str, ...]:
        return stack[stack.index("length.spinning") :]

    dispatched = {from_method(s) for s in ours if "length.spinning" in s}
    r_dispatched = {from_method(s) for s in theirs if "length.spinning" in s}
    assert dispatched and dispatched <= r_dispatched, (dispatched, r_dispatched)


@pytest.mark.live
def test_builtin_frames_alongside_rprof_are_not_doubled(profiles: Profiles) -> None:
    # GIVEN the same code while R's Rprof runs, so R opens a context for each builtin
    # WHEN xrtop samples it at the same time
    ours, theirs = profiles.during, profiles.theirs
    # THEN each builtin frame appears once, and the profiles agree as before
    assert not [s for s in ours if len(s) > 1 and s[0] in BUILTINS and s[0] == s[1]]
    _assert_same_profile(ours, theirs)


def test_no_library_calls_in_spin(spin_library: Path) -> None:
    # The lab's chroots load the host's build: it must not need any library, glibc included.
    out = subprocess.run(
        ["readelf", "-d", str(spin_library)], capture_output=True, text=True, check=True
    )
    assert "NEEDED" not in out.stdout
    assert os.path.getsize(spin_library) > 0
