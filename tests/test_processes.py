"""The pure logic of `--subprocesses`: the process set the live view reads, roles, the
children's file names, and profiles of several processes in every flame format."""

from __future__ import annotations

import io
import json
import os

import pytest

from sampler.descendants import role_of
from sampler.errors import UsageError
from sampler.export import with_process_frame
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.processes import ENDED
from sampler.processes import NOT_TRACED
from sampler.processes import ProcessSet
from sampler.processes import TracedProcess
from sampler.rprof import RprofOptions
from sampler.symbols import mapping_at
from sampler.symbols import read_maps
from xrtop.children import check_subprocess_output
from xrtop.children import child_output_path
from xrtop.cli import run
from xrtop.formats import Profile
from xrtop.formats import write_profile

WORK = Stack(("inner", "busy_worker", "FUN", "lapply", "mclapply"))
WAIT = Stack(("selectChildren", "mclapply"), idle=True)


def entry(pid: int, parent: int, role: str, stacks: list[Stack], start: int = 1) -> TracedProcess:
    return TracedProcess(pid, parent, role, start, SampleLog.from_stacks(stacks, 10_000))


def test_rows_list_every_process_target_first_with_its_samples_and_state() -> None:
    processes = ProcessSet(10_000)
    seen = processes.generation
    target = entry(10, 0, "target", [WAIT] * 3)
    worker = entry(11, 10, "mclapply worker", [WORK] * 5)
    refused = entry(12, 10, "PSOCK worker", [])
    processes.add(target)
    processes.add(worker)
    processes.add(refused)
    processes.set_state(refused, NOT_TRACED, "may not trace process 12")
    processes.set_state(worker, ENDED)
    assert processes.generation == seen + 5
    rows = processes.rows()
    assert [(r.pid, r.parent_pid, r.role, r.samples) for r in rows] == [
        (10, 0, "target", 3),
        (11, 10, "mclapply worker", 5),
        (12, 10, "PSOCK worker", 0),
    ]
    # (the target's PID runs no process here: /proc says it has ended)
    assert [r.state for r in rows][1:] == ["ended", "not traced"]
    assert rows[2].note == "may not trace process 12"
    assert processes.logs() == {10: target.log, 11: worker.log, 12: refused.log}
    assert [p.pid for p in processes.sampled()] == [10, 11]
    assert processes.summary() == (
        "1 R child processes sampled (5 samples); not traced: PID 12 (may not trace process 12)"
    )


def test_a_reused_pid_names_the_later_process_and_keeps_both() -> None:
    processes = ProcessSet(10_000)
    first = entry(20, 10, "mclapply worker", [WORK], start=100)
    later = entry(20, 10, "mclapply worker", [WORK, WORK], start=200)
    processes.add(entry(10, 0, "target", []))
    processes.add(first)
    processes.add(later)
    assert processes.log(20) is later.log
    assert processes.logs()[20] is later.log
    assert [r.samples for r in processes.rows() if r.pid == 20] == [1, 2]


@pytest.mark.parametrize(
    ("cmdline", "forked", "stack", "role"),
    [
        ("", True, ("selectChildren", "parallel::mclapply"), "mclapply worker"),
        ("", True, ("mcfork", "parallel::mcparallel", "FUN", "lapply"), "mcparallel"),
        ("", True, ("sum", "f"), "R child"),
        (
            "R -e tryCatch(parallel:::.workRSOCK,error=...)() --args PORT=1",
            False,
            (),
            "PSOCK worker",
        ),
        ("R -e workRSOCK <- ... parallelly.parent=12 --args PORT=2", False, (), "future worker"),
        ("R -e cat(file='worker.rank=1.future.parent=3.pid') PORT=3", False, (), "future worker"),
        ("R --slave -f /tmp/Rtmp/callr-scr-2bd16", False, (), "callr"),
        ("R --file=other.R", False, (), "R child"),
    ],
)
def test_roles(cmdline: str, forked: bool, stack: tuple[str, ...], role: str) -> None:
    assert role_of(cmdline, forked, stack) == role


def test_child_files_go_beside_the_targets() -> None:
    assert child_output_path("/tmp/run/prof.out", 123) == "/tmp/run/prof.123.out"
    assert child_output_path("prof", 7) == "prof.7"
    assert child_output_path("a.b/prof.out", "<PID>") == "a.b/prof.<PID>.out"


def test_record_refuses_what_subprocesses_cannot_go_with() -> None:
    with pytest.raises(UsageError, match="name the target's with -o"):
        check_subprocess_output(True, "rprof", None, None, None)
    with pytest.raises(UsageError, match="--rotate"):
        check_subprocess_output(True, "rprof", "p.out", 60.0, None)
    check_subprocess_output(True, "collapsed", None, None, None)  # one file: stdout is fine
    check_subprocess_output(True, "rprof", None, None, ["Rscript", "x.R"])  # a default name
    check_subprocess_output(False, "rprof", None, 60.0, None)
    with pytest.raises(UsageError):
        run(["record", "--subprocesses", "-p", "1"])


def test_the_process_frame_is_outermost_and_keeps_lines() -> None:
    with_lines = Stack(("f", "g"), (("a.R", 3), ("a.R", 9), ("a.R", 1)))
    framed = list(with_process_frame([with_lines, Stack(())], "PID 7 (callr)"))
    assert framed[0].names == ("f", "g", "PID 7 (callr)")
    assert framed[0].sites == (("a.R", 3), ("a.R", 9), ("a.R", 1), None)
    assert framed[1] == Stack(())  # no frames: nothing to put under the process


def two_processes() -> Profile:
    target = SampleLog.from_stacks([WAIT, Stack(("main",))], 10_000)
    worker = SampleLog.from_stacks([WORK, WORK, WORK], 10_000)
    return Profile(
        target,
        10_000,
        RprofOptions(),
        "xrtop: R PID 10",
        processes=(("PID 10 (target)", target), ("PID 11 (mclapply worker)", worker)),
    )


def test_collapsed_holds_every_process_under_its_frame() -> None:
    out = io.StringIO()
    assert write_profile(out, "collapsed", two_processes()) == 4
    assert out.getvalue().splitlines() == [
        "PID 10 (target);main 1",
        "PID 11 (mclapply worker);mclapply;lapply;FUN;busy_worker;inner 3",
    ]


def test_speedscope_holds_one_profile_per_process() -> None:
    out = io.StringIO()
    assert write_profile(out, "speedscope", two_processes()) == 4
    document = json.loads(out.getvalue())
    profiles = document["profiles"]
    assert [(p["name"], len(p["samples"]), p["endValue"]) for p in profiles] == [
        ("PID 10 (target)", 1, 0.01),
        ("PID 11 (mclapply worker)", 3, 0.03),
    ]
    frames = [f["name"] for f in document["shared"]["frames"]]
    assert [frames[i] for i in profiles[1]["samples"][0]] == list(reversed(WORK.names))


def test_rprof_holds_the_target_alone() -> None:
    out = io.StringIO()
    assert write_profile(out, "rprof", two_processes()) == 1
    assert "busy_worker" not in out.getvalue()


def test_a_forks_r_mapping_is_found_from_its_one_line() -> None:
    # (This process's own maps stand in for a fork's: the first, a middle and the last line.)
    maps = read_maps(os.getpid())
    for wanted in (maps[0], maps[len(maps) // 2], maps[-1]):
        assert mapping_at(os.getpid(), wanted.start) == wanted
    assert mapping_at(os.getpid(), 0x10) is None
