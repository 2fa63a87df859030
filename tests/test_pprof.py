"""pprof output and rotating recordings (#24), checked by their real readers: Go's
`go tool pprof` (Debian's golang-go, run offline) and R's summaryRprof."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO
from typing import Any

import pytest
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import REnv
from conftest import RLauncher
from conftest import need
from conftest import wait_for
from test_formats import r_own_profiles  # noqa: F401  (the fixture: files R's Rprof wrote)
from test_record import OPTIONS_WORKLOAD
from test_record import XRTOP
from test_record import sample_lines
from test_record import summary_numbers
from test_record import summary_rprof
from test_record import xrtop

from sampler.model import SampleLog
from sampler.model import Stack
from sampler.pprof import ProfileInfo
from sampler.pprof import stack_frames
from sampler.pprof import write_pprof
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import parse_rprof
from xrtop.formats import Profile
from xrtop.formats import open_output
from xrtop.formats import write_profile
from xrtop.rotation import Rotation
from xrtop.rotation import rotated_path
from xrtop.session import Wakeup

# ---------------------------------------------------------------------------------------------
# go tool pprof, offline


def go_pprof(tmp: Path, *args: str) -> str:
    """Run `go tool pprof ARGS` with no network and every cache in `tmp`; its stdout."""
    if shutil.which("go") is None:
        if IN_CI:
            pytest.fail("go is not installed (make tools installs golang-go)")
        pytest.skip("go is not installed (apt-get install golang-go)")
    home = tmp / "go-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "GOCACHE": str(home / "cache"),
        "GOPATH": str(home / "path"),
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=mod",
        "GOTELEMETRY": "off",
        "PPROF_TMPDIR": str(home),
    }
    done = subprocess.run(
        ["go", "tool", "pprof", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_TOP_ROW = re.compile(r"^\s*(\d+)\s+\S+%\s+\S+%\s+(\d+)\s+\S+%\s+(.+)$")


def pprof_top(tmp: Path, path: Path, *flags: str) -> dict[str, tuple[int, int]]:
    """`go tool pprof -top` in samples: (flat, cum) per node, every node shown."""
    out = go_pprof(
        tmp, "-top", "-sample_index=samples", "-nodecount=100000", "-nodefraction=0",
        "-edgefraction=0", *flags, str(path),
    )  # fmt: skip
    rows = {}
    for line in out.splitlines():
        match = _TOP_ROW.match(line)
        if match:
            rows[match[3].strip()] = (int(match[1]), int(match[2]))
    assert rows, out
    return rows


def r_counts(path: Path, interval_s: float) -> dict[str, tuple[int, int]]:
    """summaryRprof's (self, total) per function, in samples."""
    summary = summary_rprof(path)
    return {
        name: (round(summary.self[name] / interval_s), round(total / interval_s))
        for name, total in summary.total.items()
    }


def assert_same_shares(tmp: Path, rprof: Path, pprof: Path, interval_s: float) -> None:
    """pprof's flat and cum per function are summaryRprof's self and total of the file."""
    ours = pprof_top(tmp, pprof)
    theirs = r_counts(rprof, interval_s)
    assert sum(flat for flat, _ in theirs.values()) > 0
    assert ours == theirs


def record_workload(r_launcher: RLauncher, tmp: Path, *flags: str) -> Path:
    """An Rprof.out recorded by xrtop from R computing, sleeping and allocating in turn."""
    script = tmp / "options.R"
    script.write_text(OPTIONS_WORKLOAD)
    run = r_launcher.start(str(script))
    out = tmp / "options.out"
    done = xrtop("record", "-p", str(run.pid), "-d", "2", "-o", str(out), *flags)
    assert done.returncode == 0, done.stderr
    return out


# ---------------------------------------------------------------------------------------------
# The same recording: go tool pprof against summaryRprof


@pytest.mark.parametrize("flags", [[], ["--lines", "--gc"]], ids=["plain", "lines-gc"])
def test_pprof_shows_the_shares_summaryrprof_shows(
    flags: list[str], r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN a real R recording as Rprof.out (with and without lines)
    rprof = record_workload(r_launcher, tmp_path, *flags)
    # WHEN it is converted to pprof
    pprof = tmp_path / "options.pb.gz"
    done = xrtop("convert", str(rprof), "--format", "pprof", "-o", str(pprof))
    assert done.returncode == 0, done.stderr
    # THEN go tool pprof finds every function in as many samples, flat and cumulative, as
    # summaryRprof finds it in total and self time
    assert_same_shares(tmp_path, rprof, pprof, 0.01)
    if "--lines" not in flags:
        return
    # AND with lines, the lines pprof shows are the lines summaryRprof shows
    by_line = pprof_top(tmp_path, pprof, "-lines")
    own: Counter[str] = Counter()  # per `file#line`, as summaryRprof names lines
    for node, (flat, _) in by_line.items():
        where = re.search(r" (\S+):(\d+)$", node)
        if where:
            own[f"{Path(where[1]).name}#{where[2]}"] += flat
    theirs = {n for n in summary_rprof(rprof, lines="show").total if re.fullmatch(r".+#\d+", n)}
    assert own and set(own) == theirs
    # AND each line's own samples are the samples whose innermost frame, in the file's text,
    # runs that line (summaryRprof's self time instead moves out to the nearest known line)
    assert +own == leaf_lines(rprof)


def leaf_lines(path: Path) -> Counter[str]:
    """Samples per innermost location (`file#line`, the file's base name) of an Rprof.out
    with lines, read from its text: the first token when it is a location."""
    files: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines()[1:]:
        header = re.fullmatch(r"#File (\d+): (.*)", line)
        if header:
            files[header[1]] = Path(header[2]).name
            continue
        first = re.match(r"(\d+)#(\d+) ", line)  # (in GC, "<GC>" is innermost)
        if first:
            counts[f"{files[first[1]]}#{first[2]}"] += 1
    return counts


def test_record_pprof_directly_with_lines(r_launcher: RLauncher, tmp_path: Path) -> None:
    # GIVEN R running its code with source references
    script = tmp_path / "options.R"
    script.write_text(OPTIONS_WORKLOAD)
    run = r_launcher.start(str(script))
    out = tmp_path / "direct.pb.gz"
    before = time.time()
    # WHEN xrtop records pprof straight away, with lines
    done = xrtop(
        "record", "-p", str(run.pid), "-d", "2", "--lines", "--format", "pprof", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    # THEN go tool pprof reads every sample xrtop took (idle ones are left out, as in Rprof.out)
    numbers = summary_numbers(done.stderr)
    top = pprof_top(tmp_path, out)
    total = sum(flat for flat, _ in top.values())
    assert numbers["samples"] - numbers["idle"] <= total <= numbers["samples"]
    assert top["work"][1] > 0 and top["churn"][1] > 0
    # AND the functions carry their file and lines
    assert any(
        re.fullmatch(r"work \S*work\.R:\d+", node) for node in pprof_top(tmp_path, out, "-lines")
    )
    # AND the profile says what it measured, when, for how long, and in which process
    raw = go_pprof(tmp_path, "-raw", str(out))
    assert "PeriodType: cpu nanoseconds" in raw and "Period: 10000000" in raw
    assert "samples/count cpu/nanoseconds[dflt]" in raw
    assert f"pid:[{run.pid}]" in raw
    assert "Comment: R " in raw
    started = re.search(r"^Time: (\S+) (\d+:\d+:\d+)\S* ([+-]\d{4})", raw, re.M)
    assert started, raw
    stamp = datetime.strptime(" ".join(started.groups()), "%Y-%m-%d %H:%M:%S %z").timestamp()
    assert before - 2 <= stamp <= time.time()
    header = go_pprof(tmp_path, "-top", "-nodecount=1", str(out))
    duration = re.search(r"Duration: ([\d.]+)s,", header)
    assert duration and 1.5 <= float(duration[1]) <= 3.0, header


def test_idle_samples_make_a_wall_time_profile(r_launcher: RLauncher, tmp_path: Path) -> None:
    rprof = record_workload(r_launcher, tmp_path)
    script = tmp_path / "options.R"
    run = r_launcher.start(str(script))
    out = tmp_path / "idle.pb.gz"
    done = xrtop(
        "record", "-p", str(run.pid), "-d", "2", "--idle", "--format", "pprof", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    raw = go_pprof(tmp_path, "-raw", str(out))
    assert "PeriodType: wall nanoseconds" in raw
    # R asleep in nap() counts only with --idle (without, only its moments awake do)
    top = pprof_top(tmp_path, out)
    share = top["nap"][1] / sum(flat for flat, _ in top.values())
    without = r_counts(rprof, 0.01)
    share_without = without.get("nap", (0, 0))[1] / sum(own for own, _ in without.values())
    assert share > 0.15 and share > 2 * share_without, (share, share_without)


# ---------------------------------------------------------------------------------------------
# R's own files


@pytest.mark.live
@pytest.mark.parametrize("name", ["plain.out", "gcline.out", "all.out", "toplevel.out"])
def test_convert_of_rs_own_rprof_is_read_by_go_pprof(
    name: str,
    r_own_profiles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = r_own_profiles / name
    out = tmp_path / "r.pb.gz"
    done = xrtop("convert", str(path), "--format", "pprof", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert_same_shares(tmp_path, path, out, 0.01)
    if name == "gcline.out":
        assert "<GC>" in pprof_top(tmp_path, out)


@pytest.mark.live
def test_convert_pprof_to_standard_output_is_the_gzipped_profile(
    r_own_profiles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [*XRTOP, "convert", str(r_own_profiles / "plain.out"), "--format", "pprof"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "stdout.pb.gz"
    out.write_bytes(done.stdout)
    assert gzip.decompress(done.stdout)
    assert_same_shares(tmp_path, r_own_profiles / "plain.out", out, 0.01)


# ---------------------------------------------------------------------------------------------
# Rotation


def rotated(tmp: Path, stem: str, suffix: str) -> list[Path]:
    """The numbered files of a rotated recording, in order."""
    files = sorted(tmp.glob(f"{stem}.*.{suffix}"), key=lambda p: int(p.name.split(".")[1]))
    assert [int(p.name.split(".")[1]) for p in files] == list(range(1, len(files) + 1))
    return files


def test_rotation_under_a_running_r_loses_no_sample(
    r_env: REnv, r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN R computing without pause (every R version, plain and container-like)
    run = r_launcher.start("busy.R", "60", env=r_env)
    # WHEN xrtop records it into a new file every second (GC and idle kept: every sample
    # the sampler takes has a line)
    done = xrtop(
        "record", "-p", str(run.pid), "-F", "200", "-d", "4.5", "--rotate", "1", "--gc",
        "--idle", "-o", str(tmp_path / "busy.out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = rotated(tmp_path, "busy", "out")
    # THEN there are files of a second each, each read by R in full
    assert 4 <= len(files) <= 6, files
    counts = []
    for path in files:
        lines = sample_lines(path)
        summary = summary_rprof(path)
        assert summary.sampling_time == pytest.approx(len(lines) * 0.005, abs=1e-6)
        counts.append(len(lines))
    # AND together they hold every sample taken, each once
    numbers = summary_numbers(done.stderr)
    assert sum(counts) == numbers["samples"] == numbers["written"]
    assert all(n > 0 for n in counts[:-1])
    assert f"{len(files)} files, {sum(counts)} samples" in done.stderr


@pytest.mark.parametrize("fmt", ["rprof", "pprof"])
def test_sighup_rotates_at_once(fmt: str, r_launcher: RLauncher, tmp_path: Path) -> None:
    # GIVEN xrtop recording a busy R, rotating only once an hour
    run = r_launcher.start("busy.R", "60")
    suffix = "out" if fmt == "rprof" else "pb.gz"
    proc = subprocess.Popen(
        [*XRTOP, "record", "-p", str(run.pid), "-F", "200", "--rotate", "3600", "--gc",
         "--idle", "--format", fmt, "-o", str(tmp_path / f"hup.{suffix}")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = tmp_path / f"hup.1.{suffix}"
        wait_for(first.exists, 60, "the first file")
        # WHEN it gets SIGHUP twice, a second apart
        for number in (2, 3):
            time.sleep(1)
            proc.send_signal(signal.SIGHUP)
            wait_for((tmp_path / f"hup.{number}.{suffix}").exists, 30, f"file {number}")
        time.sleep(1)
        assert proc.poll() is None, "SIGHUP must not end the recording"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    # THEN three files, each complete and read by its reader, together every sample
    files = rotated(tmp_path, "hup", suffix)
    assert len(files) == 3
    if fmt == "rprof":
        counts = [len(sample_lines(path)) for path in files]
        for path in files:
            summary_rprof(path)
    else:
        counts = [sum(f for f, _ in pprof_top(tmp_path, path).values()) for path in files]
    assert all(n > 50 for n in counts), counts
    assert sum(counts) == summary_numbers(stderr)["samples"]


@pytest.mark.live
def test_sighup_rotates_a_launched_recording_and_is_not_passed_on(tmp_path: Path) -> None:
    need(REnv("host"))
    out = tmp_path / "launched.out"
    proc = subprocess.Popen(
        [*XRTOP, "record", "-F", "200", "--rotate", "3600", "-o", str(out), "--", "Rscript",
         str(R_SCRIPTS / "busy.R"), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = tmp_path / "launched.1.out"
        wait_for(lambda: first.exists() and first.read_text().count("\n") > 50, 60, "samples")
        proc.send_signal(signal.SIGHUP)
        second = tmp_path / "launched.2.out"
        wait_for(lambda: second.exists() and second.read_text().count("\n") > 50, 60, "file 2")
        assert proc.poll() is None, "the program must not have got the SIGHUP"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    for path in (first, second):
        assert summary_rprof(path).total["fib"] > 0


@pytest.mark.parametrize(
    "args",
    [
        ["record", "-p", "1", "--rotate", "10"],  # standard output cannot rotate
        ["record", "-p", "1", "--rotate", "0", "-o", "x.out"],
        ["record", "-p", "1", "--rotate", "soon", "-o", "x.out"],
    ],
)
def test_rotate_mistakes_are_one_message_and_exit_2(args: list[str], tmp_path: Path) -> None:
    done = xrtop(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("xrtop: ") and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Pure logic


@pytest.mark.parametrize(
    ("path", "suffix", "expected"),
    [
        ("prof.out", "out", "prof.3.out"),
        ("/d/prof.pb.gz", "pb.gz", "/d/prof.3.pb.gz"),
        ("a.b/cpu.pprof", "pb.gz", "a.b/cpu.3.pprof"),
        ("x.speedscope.json", "speedscope.json", "x.3.speedscope.json"),
        ("prof", "out", "prof.3"),
        (".hidden", "out", ".hidden.3"),
    ],
)
def test_rotated_names_put_the_number_before_the_suffix(
    path: str, suffix: str, expected: str
) -> None:
    assert rotated_path(path, 3, suffix) == expected


class LogOnlySession:
    """What a rotation of a whole format reads of a session: its log and its profiles."""

    stream = None

    def __init__(self, stacks: list[Stack]) -> None:
        self.log = SampleLog(10_000)
        for i, stack in enumerate(stacks):
            self.log.add(stack, i / 100)

    def span_ns(self, first: int = 0) -> tuple[int, int]:
        return 0, 0

    def profile(self, start: int, stop: int, *, span: tuple[int, int]) -> Profile:
        return Profile.of_log(self.log, RprofOptions(), "test", start, stop)


def test_a_rotated_file_is_complete_before_its_successor_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a collapsed-stacks recording into its first file
    session = LogOnlySession([Stack(("f", "g"))] * 3)
    rotation = Rotation(3600, "collapsed", Wakeup())
    first = rotation.first_file(str(tmp_path / "p.collapsed.txt"))
    rotation.begin(session, open_output(first, "collapsed"))  # type: ignore[arg-type]
    second = tmp_path / "p.2.collapsed.txt"
    successor_seen: list[bool] = []

    def write(out: IO[Any], fmt: str, profile: Profile) -> int:
        successor_seen.append(second.exists())
        return write_profile(out, fmt, profile)

    monkeypatch.setattr("xrtop.rotation.write_profile", write)
    # WHEN it rotates
    rotation.request()
    assert rotation.poll()
    # THEN the second file got its name only after the first was written, and is there now
    assert successor_seen == [False]
    assert Path(first).read_text() == "g;f 3\n"
    assert second.exists() and not list(tmp_path.glob(".*"))
    assert rotation.closed == [(first, 3)]


STACKS = [
    Stack(("f", "g"), (("a.R", 2), ("a.R", 5), None)),
    Stack(("f",), gc=True),
    Stack((), gc=True),
    Stack(("sleep", "g"), idle=True),
    Stack((), idle=True),
]


@pytest.mark.parametrize("gc", [False, True])
@pytest.mark.parametrize("idle", [False, True])
def test_a_profile_holds_the_samples_the_rprof_file_holds(gc: bool, idle: bool) -> None:
    options = RprofOptions(lines=True, gc=gc, idle=idle)
    text = io.StringIO()
    RprofWriter(text, 10000, options).add_all(STACKS)
    from_file = [
        tuple(frame.name for frame in stack_frames(stack, options))
        for stack in parse_rprof(text.getvalue()).stacks
    ]
    ours = [tuple(f.name for f in stack_frames(stack, options)) for stack in STACKS]
    assert [frames for frames in ours if frames] == from_file
    out = io.BytesIO()
    assert write_pprof(out, STACKS, 10000, options, ProfileInfo()) == len(from_file)


def test_frames_carry_file_and_line_only_with_lines() -> None:
    stack = STACKS[0]
    assert stack_frames(stack, RprofOptions(lines=True))[0][:3] == ("f", "a.R", 2)
    assert stack_frames(stack, RprofOptions())[0][:3] == ("f", "", 0)
