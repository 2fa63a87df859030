"""Line numbers on real R processes of every version: xrtop's line tokens against R's own
`Rprof(line.profiling = TRUE)` of the same sourced script, byte-compiled and not."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import REnv
from conftest import RLauncher
from conftest import RRun
from conftest import rscript
from conftest import sample
from conftest import wait_for

from sampler.decode import HiddenGlobals
from sampler.decode import find_bc_globals
from sampler.decode import find_gc_flag
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import read_rprof
from sampler.rprof import write_rprof
from sampler.target import Target
from sampler.target import attach
from sampler.thread import SamplerThread
from xrtop.session import capability_notes

#: The functions of tests/r/lines.R whose lines are compared, and the file each is in:
#: `helper`'s srcfile is an unhashed environment, the others' a hashed one (srcfilecopy).
FUNCTIONS = {"inner": "lines.R", "middle": "lines.R", "outer": "lines.R", "helper": "virtual.R"}


def sample_lines(target: Target, seconds: float, rate: float = 200) -> SampleLog:
    target.set_lines(True)
    return sample(target, seconds, rate=rate)


def line_counts(stacks: list[Stack]) -> Counter[tuple[str, int]]:
    """(function, line executing in it) over the frames of FUNCTIONS, in their own files.

    This is what both profiles agree on even though R's own also shows builtin frames
    (Rprof makes contexts for them): the token before a name is the line running in it.
    """
    counts: Counter[tuple[str, int]] = Counter()
    for stack in stacks:
        for i, name in enumerate(stack.names):
            loc = stack.site(i)
            if loc is not None and name in FUNCTIONS and loc[0].endswith(FUNCTIONS[name]):
                counts[(name, loc[1])] += 1
    return counts


def shares(counts: Counter[tuple[str, int]]) -> dict[tuple[str, int], float]:
    per_function = Counter[str]()
    for (name, _), n in counts.items():
        per_function[name] += n
    return {key: n / per_function[key[0]] for key, n in counts.items()}


def start_r_own_profile(
    launcher: RLauncher, env: REnv, extra: dict[str, str], seconds: float = 3.0
) -> tuple[RRun, Path]:
    """Start lines.R under R's own line profiling, for `seconds`; return its run and the
    Rprof.out it writes (see `finished_r_own_profile`)."""
    name = f"xrtop-rprof-{uuid.uuid4().hex[:10]}.out"
    if env.suite == "host":
        inside = outside = launcher.tmp / name
    else:
        inside = Path("/tmp") / name
        outside = Path(os.environ.get("RLAB_ROOT", "/opt/rlab")) / env.suite / "tmp" / name
    run = launcher.start(
        "lines.R", str(seconds), env=env, extra_env={**extra, "XRTOP_RPROF": str(inside)}
    )
    return run, outside


def finished_r_own_profile(run: RRun, path: Path) -> Path:
    """The Rprof.out of a run `start_r_own_profile` started, once it finished."""
    wait_for(lambda: not run.alive(), 60, "R's own profile to finish")
    if run.handle is not None:
        run.handle.wait(10)
    wait_for(path.exists, 10, "R's Rprof.out")
    return path


def script_path(run: RRun) -> str:
    """The path R was given for the script (what its srcfile `filename` holds)."""
    args = Path(f"/proc/{run.pid}/cmdline").read_bytes().split(b"\0")
    for arg in args:
        if arg.startswith(b"--file="):
            return arg[7:].decode()
    raise AssertionError(f"no --file= in {args}")


@pytest.mark.parametrize("jit", ["jit", "nojit"])
def test_line_tokens_match_r_line_profiling(
    r_env: REnv, r_launcher: RLauncher, tmp_path: Path, jit: str
) -> None:
    extra = {"R_ENABLE_JIT": "0"} if jit == "nojit" else {}
    # GIVEN R's own line profile of the sourced script (the ground truth), taken by another
    # R at the same time as xrtop's (R's Rprof counts CPU time, and an R preempted is
    # sampled on whatever line it waits: sharing the CPUs changes neither's shares)
    reference_run, reference_file = start_r_own_profile(r_launcher, r_env, extra)
    # WHEN xrtop samples the same script with lines on
    run = r_launcher.start("lines.R", "60", env=r_env, extra_env=extra)
    target = attach(run.pid)
    # Every build here (Debian's R 4.0 to 4.6) decodes R_BCbody/R_BCpc: the current line
    # inside byte code is known.
    assert target.hidden.bc_globals is not None
    log = sample_lines(target, 2.0)
    reference_path = finished_r_own_profile(reference_run, reference_file)
    reference = read_rprof(reference_path)
    assert reference.options.lines
    expected = shares(line_counts(reference.stacks))
    assert {name for name, _ in expected} == set(FUNCTIONS), expected
    stacks = list(log.iter_stacks())
    ours = line_counts(stacks)
    got = shares(ours)
    # THEN every stack carries a token per frame plus the current line
    for stack in stacks:
        assert len(stack.sites) == len(stack.names) + 1, stack
    # AND the files are the script as R names it
    path = script_path(run)
    assert {loc[0] for s in stacks for loc in s.sites if loc} == {path, "virtual.R"}
    # AND the lines agree with R's: every line xrtop reports often, R reports too; every
    # line R reports often, xrtop reports too; and the hottest line of each function is
    # the same.
    # (5 %: a small function's single sample on a line R's coarser sampling missed is noise)
    assert {k for k, v in got.items() if v >= 0.05} <= set(expected), (got, expected)
    assert {k for k, v in expected.items() if v >= 0.15} <= set(got), (got, expected)
    for name in FUNCTIONS:
        ours_top = max((k for k in got if k[0] == name), key=got.__getitem__)
        theirs_top = max((k for k in expected if k[0] == name), key=expected.__getitem__)
        assert ours_top == theirs_top, (name, got, expected)
    # AND the innermost token (line running in `inner`) is there in most samples
    innermost = [s for s in stacks if s.names and s.names[0] == "inner"]
    assert sum(1 for s in innermost if s.sites[0] is not None) > 0.9 * len(innermost)
    assert target.keeps_source is True
    # AND R's summaryRprof reads xrtop's file and finds the same hottest line as in R's
    out = tmp_path / "xrtop.out"
    write_rprof(out, log, RprofOptions(lines=True))
    code = (
        f"for (f in c('{out}', '{reference_path}')) {{ "
        "s <- summaryRprof(f, lines = 'show')$by.self; "
        "b <- summaryRprof(f, lines = 'both')$by.total; "
        "cat(sub('.*/', '', rownames(s)[1]), any(grepl('^.inner.$', rownames(b))), '\\n') }"
    )
    mine, theirs = rscript(code).splitlines()
    assert mine.split()[0].endswith("lines.R#18"), mine
    assert mine.split()[0].split("lines.R")[-1] == theirs.split()[0].split("lines.R")[-1]
    assert mine.split()[1] == "TRUE"


def test_no_source_references_is_reported(r_env: REnv, r_launcher: RLauncher) -> None:
    # GIVEN Rscript running a script as is (keep.source is FALSE outside interactive R)
    run = r_launcher.start("busy.R", "60", env=r_env)
    target = attach(run.pid)
    assert target.keeps_source is None  # lines off: unknown
    # WHEN xrtop reads lines
    log = sample_lines(target, 1.0)
    # THEN no frame has a location, and the target says it keeps no source references
    stacks = [s for s in log.iter_stacks() if s.names]
    assert stacks
    assert all(loc is None for s in stacks for loc in s.sites)
    assert target.keeps_source is False


def test_lines_off_reads_no_lines(r_launcher: RLauncher) -> None:
    run = r_launcher.start("lines.R", "60")
    target = attach(run.pid)
    # Lines on, then off again: the samples taken with lines off carry none.
    target.set_lines(True)
    target.set_lines(False)
    assert target.reader.lines is None
    log = SampleLog(5000)
    thread = SamplerThread(target, log, rate_hz=200)
    thread.start()
    thread.wait_ready()
    time.sleep(0.5)
    thread.stop()
    stacks = list(log.iter_stacks())
    assert stacks and all(s.sites == () for s in stacks)


def test_without_bc_globals_lines_fall_back_to_call_sites(r_launcher: RLauncher) -> None:
    # GIVEN a build whose Rf_begincontext could not be decoded (simulated: no R_BCbody/pc)
    run = r_launcher.start("lines.R", "60")
    target = attach(run.pid)
    target.hidden = HiddenGlobals(gc_flag=target.hidden.gc_flag)
    assert any("call sites only" in n for n in capability_notes(target, RprofOptions(lines=True)))
    stacks = [s for s in sample_lines(target, 1.0).iter_stacks() if s.names]
    in_inner = [s for s in stacks if s.names[0] == "inner"]
    assert len(in_inner) > 0.5 * len(stacks)
    # THEN byte code's current line is unknown, but every call site is still there. The
    # one exception is the instant R enters the closure, before its byte code runs: R_Srcref
    # then holds the function's own srcref, whose first line (15) R's Rprof would write too.
    entering = [s for s in in_inner if s.sites[0] is not None]
    assert all(s.sites[0] is not None and s.sites[0][1] == 15 for s in entering)
    assert len(entering) <= 0.05 * len(in_inner), len(entering)
    for stack in in_inner:
        assert [loc[1] if loc else None for loc in stack.sites[1:4]] in ([23, 33, 43], [24, 33, 43])


def test_decoder_guesses_nothing_on_unknown_code() -> None:
    # Pure logic: the instruction matcher on code it does not know.
    lea_load_store = (
        b"\x48\x8d\x05\x10\x00\x00\x00"  # lea 0x10(%rip),%rax
        b"\x48\x8b\x00"  # mov (%rax),%rax
        b"\x48\x89\x87\x38\x01\x00\x00"  # mov %rax,0x138(%rdi)
        b"\x48\x8d\x05\x20\x00\x00\x00"  # lea 0x20(%rip),%rax
        b"\x48\x8b\x00"  # mov (%rax),%rax
        b"\x48\x89\x87\x40\x01\x00\x00"  # mov %rax,0x140(%rdi)
        b"\xc3"
    )
    found = find_bc_globals(lea_load_store, 0x1000, 312, 320)
    assert found == (0x1000 + 7 + 0x10, 0x1000 + 24 + 0x20)
    # An unknown instruction (here `xchg`) before the stores: no answer rather than a guess.
    assert find_bc_globals(b"\x48\x87\xc8" + lea_load_store, 0x1000, 312, 320) is None
    # A context register that was overwritten no longer names the context.
    clobbered = b"\x48\x8d\x3d\x00\x00\x00\x00" + lea_load_store  # lea 0(%rip),%rdi
    assert find_bc_globals(clobbered, 0x1000, 312, 320) is None
    assert find_gc_flag(b"\x90" * 64, 0x1000, lambda _slot: True) is None


def test_lines_come_from_the_one_read_snapshot(r_launcher: RLauncher) -> None:
    # GIVEN a steady loop sampled with lines on
    run = r_launcher.start("lines.R", "60")
    target = attach(run.pid)
    target.set_lines(True)
    log = SampleLog(5000)
    thread = SamplerThread(target, log, rate_hz=200)
    thread.start()
    thread.wait_ready()
    time.sleep(0.5)  # the plan learns the srcref regions in the first samples
    reader = target.reader
    calls_before, samples_before = target.memory.calls - reader.warmed, len(log)
    time.sleep(1.5)
    calls = target.memory.calls - reader.warmed - calls_before
    samples = len(log) - samples_before
    thread.stop()
    # THEN lines cost few reads: the srcref nodes, bodies and pc words ride the one read
    # taken at the stop (a context's srcref is read again only when it is new; the read
    # that warms the caches before each stop, while R runs, is not counted)
    assert samples > 100
    assert calls < 2.0 * samples, (calls, samples)
    # AND those samples carry lines
    stacks = list(log.iter_stacks())
    assert sum(1 for s in stacks if s.sites and s.sites[1] is not None) > 0.9 * len(stacks)
