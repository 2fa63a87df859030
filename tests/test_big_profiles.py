"""Big recordings (#27) and cut-off ones (#25): the counting reader gives the model the
line-by-line reader gave, in memory that does not grow per sample by more than the compact
log; a last line cut mid-way is left out with one warning; progress shows on a terminal
only; `q` quits `xrtop view` while its file loads."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import pty
import re
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest
from conftest import rscript
from test_formats import r_own_profiles  # noqa: F401 (a fixture)
from test_record import XRTOP
from test_record import summary_rprof
from test_record import xrtop
from textual.widgets import ProgressBar

from sampler.errors import RprofFormatError
from sampler.model import GC_NAME
from sampler.model import SrcLoc
from sampler.model import Stack
from sampler.rprof import Progress
from sampler.rprof import RprofFile
from sampler.rprof import RprofOptions
from sampler.rprof import parse_rprof
from sampler.rprof import read_rprof
from widgets.hot_table import HotTable
from xrtop import loading
from xrtop.screenshots import DEMO_PROFILE

DATA = Path(__file__).parent / "data"
BENCH = Path(__file__).parent.parent / "bench"


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bigprofile = _bench_module("bigprofile")


# -- the oracle: the reader as it was before #27, one Stack parsed per sample line ----------


def line_by_line(text: str) -> tuple[RprofOptions, bool, list[Stack]]:
    """(options, memory, stacks) of complete Rprof.out text, every line parsed on its own."""
    lines = text.split("\n")
    assert lines.pop() == ""
    head = re.match(r"((?:(?:memory|GC|line) profiling: )*)sample\.interval=(\d+)", lines[0])
    assert head is not None
    lines_on = "line profiling" in head[1]
    gc_on = "GC profiling" in head[1]
    memory = "memory profiling" in head[1]
    files: dict[int, str] = {}
    stacks: list[Stack] = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        file_line = re.fullmatch(r"#File (\d+): (.*)", line)
        if lines_on and file_line:
            files[int(file_line[1])] = file_line[2]
            continue
        if memory:
            line = re.sub(r"^:\d+:\d+:\d+:\d+:", "", line)
        names: list[str] = []
        sites: list[SrcLoc | None] = [None]
        gc = False
        for token in re.findall(r'"(?:.*?)"(?= |$)|[^ ]+', line):
            if token.startswith('"'):
                if token[1:-1] == GC_NAME and not names and not gc:
                    gc = True
                else:
                    names.append(token[1:-1])
                    sites.append(None)
            else:
                number, at = token.split("#")
                sites[-1] = (files[int(number)], int(at))
        gc_on = gc_on or gc
        stacks.append(Stack(tuple(names), tuple(sites) if lines_on else (), gc=gc))
    return RprofOptions(lines_on, gc_on), memory, stacks


def assert_same_as_line_by_line(path: Path) -> None:
    profile = read_rprof(path)
    options, memory, stacks = line_by_line(path.read_text())
    assert (profile.options, profile.memory) == (options, memory)
    assert profile.stacks == stacks
    assert not profile.warnings
    # One Stack object per distinct stack, shared by all its samples.
    assert len(profile.log.stacks) == len(set(stacks))
    assert (
        list(profile.log.times[:3])
        == [i * profile.interval_us / 1e6 for i in range(3)][: len(profile.log)]
    )


@pytest.mark.parametrize(
    "path", [DATA / "demo-rprof-lines.out", DEMO_PROFILE], ids=lambda p: p.name
)
def test_reader_matches_line_by_line_on_the_test_data(path: Path) -> None:
    assert_same_as_line_by_line(path)


@pytest.mark.live
def test_reader_matches_line_by_line_on_rs_own_files(r_own_profiles: Path) -> None:  # noqa: F811
    names = sorted(p.name for p in r_own_profiles.glob("*.out"))
    assert names == ["all.out", "gcline.out", "plain.out", "toplevel.out"]
    for name in names:
        assert_same_as_line_by_line(r_own_profiles / name)


@pytest.mark.parametrize(
    ("lines", "memory"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_reader_matches_line_by_line_and_the_generator(
    lines: bool, memory: bool, tmp_path: Path
) -> None:
    path = tmp_path / "big.out"
    made = bigprofile.generate(path, samples=6000, stacks=700, seed=7, lines=lines, memory=memory)
    assert_same_as_line_by_line(path)
    profile = read_rprof(path)
    assert profile.stacks == [made.stacks[i] for i in made.samples]
    text = path.read_text()
    assert ("#File 1: " in text) == lines and text.startswith("memory profiling: ") == memory
    assert profile.options.gc and any(s.gc for s in made.stacks)


def test_a_file_number_given_a_new_file_changes_the_lines_that_use_it() -> None:
    text = 'line profiling: sample.interval=1000\n#File 1: a.R\n"f" 1#2 \n#File 1: b.R\n"f" 1#2 \n'
    stacks = parse_rprof(text).stacks
    assert [s.sites for s in stacks] == [(None, ("a.R", 2)), (None, ("b.R", 2))]


def test_memory_grows_by_a_few_bytes_per_sample(tmp_path: Path) -> None:
    # Same distinct stacks, four times the samples: what reading keeps grows by the
    # compact log's 12 bytes per sample (stack id and time), not by a Stack or a line.
    small, big = tmp_path / "small.out", tmp_path / "big.out"
    bigprofile.generate(small, samples=10_000, stacks=2000, seed=3)
    bigprofile.generate(big, samples=40_000, stacks=2000, seed=3)
    kept = []
    for path in (small, big):
        # A full collection empties CPython's free lists first: a tuple taken from one is
        # not traced, and how full they were depended on the tests run before.
        gc.collect()
        tracemalloc.start()
        profile = read_rprof(path)
        kept.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        assert len(profile.log.stacks) == 2000
        del profile
    per_sample = (kept[1] - kept[0]) / 30_000
    assert per_sample < 20, per_sample
    assert big.stat().st_size > 3 * small.stat().st_size  # the file itself did grow


# -- cut-off files (#25) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def r_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file R's own Rprof wrote, with GC and line profiling."""
    where = tmp_path_factory.mktemp("cut")
    path = where / "r.out"
    rscript(
        f'src <- file.path("{where}", "w.R"); '
        'writeLines(c("work <- function() {", "  x <- list()", '
        '"  for (i in 1:3000) x[[i]] <- rnorm(40)", "  sum(unlist(x))", "}"), src); '
        "source(src, keep.source = TRUE); "
        f'Rprof("{path}", interval = 0.005, gc.profiling = TRUE, line.profiling = TRUE); '
        "t <- proc.time()[[3]]; while (proc.time()[[3]] - t < 0.6) work(); Rprof(NULL)"
    )
    return path


@pytest.mark.live
def test_a_cut_off_last_line_is_left_out_with_one_warning(
    r_recording: Path, tmp_path: Path
) -> None:
    data = r_recording.read_bytes()
    lines = data.split(b"\n")
    assert len(lines) > 30 and lines[-1] == b""
    whole = read_rprof(r_recording).stacks
    starts = [m.end() for m in re.finditer(rb"\n", data)]
    # Cut inside a sample line at several places: in a name, after a location, one byte
    # short of the end of line; and inside a #File line.
    cuts = []
    for i in range(10, 13):
        line_start, line_end = starts[i], starts[i + 1]
        cuts += [line_start + 3, (line_start + line_end) // 2, line_end - 1]
    file_line = data.index(b"#File 1: ")
    cuts.append(file_line + 5)
    for cut in cuts:
        path = tmp_path / f"cut-{cut}.out"
        path.write_bytes(data[:cut])
        line_number = data[:cut].count(b"\n") + 1
        complete = parse_rprof(data[: data.rindex(b"\n", 0, cut) + 1].decode()).stacks
        profile = read_rprof(path)
        assert profile.stacks == complete and len(complete) < len(whole)
        assert profile.stacks == whole[: len(complete)]
        assert profile.warnings == (
            f"{path}: line {line_number} is cut off (the recording stopped in the middle of "
            "it); it was left out",
        )
        # convert: one warning line naming the line, and the samples before it
        done = xrtop("convert", str(path), "--format", "collapsed")
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == [f"xrtop: warning: {profile.warnings[0]}"]
        converted = sum(int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines())
        assert converted == sum(1 for s in complete if s.names or s.gc)
        # R's own summaryRprof reads the same cut file
        assert summary_rprof(path).sampling_time > 0


@pytest.mark.live
def test_a_corrupt_line_before_the_end_is_still_an_error(r_recording: Path, tmp_path: Path) -> None:
    lines = r_recording.read_bytes().split(b"\n")
    lines[20] = lines[20][: len(lines[20]) // 2]  # torn in the middle of the file
    path = tmp_path / "corrupt.out"
    path.write_bytes(b"\n".join(lines)[:-5])  # and cut at the end too
    with pytest.raises(RprofFormatError) as info:
        read_rprof(path)
    assert info.value.line == 21
    done = xrtop("convert", str(path), "--format", "collapsed")
    assert done.returncode == 7 and f"{path}:21: not a valid Rprof.out" in done.stderr


# -- progress ----------------------------------------------------------------------------------


def _run_on_terminal(args: list[str], timeout: float = 60) -> str:
    """Run xrtop with a pseudo-terminal as standard error; return what it printed there."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=terminal, stdin=terminal)
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=10)
    os.close(controller)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_convert_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    path = tmp_path / "progress.out"
    bigprofile.generate(path, samples=60_000, stacks=3000, seed=5)
    out = str(tmp_path / "out.json")
    args = [*XRTOP, "convert", str(path), "--format", "speedscope", "-o", out]
    shown = _run_on_terminal(args)
    assert "xrtop: reading progress.out" in shown and "MB" in shown
    piped = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert piped.returncode == 0
    assert "reading" not in piped.stderr and piped.stderr.startswith("xrtop: 60000 samples")


# -- the live view loading a file --------------------------------------------------------------


@pytest.fixture
def held_reader(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The view's reader starts only once the returned event is set (the reading itself is
    the real one), so that a test sees the loading screen however fast the machine is."""
    start = threading.Event()

    def held(path: Path, progress: Progress | None = None) -> RprofFile:
        assert start.wait(60)
        return read_rprof(path, progress)

    monkeypatch.setattr(loading, "read_rprof", held)
    return start


def test_view_shows_the_file_loading_then_its_table(
    tmp_path: Path, held_reader: threading.Event
) -> None:
    path = tmp_path / "view.out"
    made = bigprofile.generate(path, samples=30_000, stacks=2000, seed=9)
    cut = path.read_bytes()[:-3]  # and a cut-off last line
    path.write_bytes(cut)

    async def run() -> None:
        app = loading.FileViewApp(path)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, loading.LoadingScreen)
            assert f"Reading {path.name}" in str(app.screen.query_one("#loading-title").render())
            assert app.screen.query_one(ProgressBar).total == len(cut)
            held_reader.set()
            for _ in range(200):
                await pilot.pause(0.05)
                if not isinstance(app.screen, loading.LoadingScreen):
                    break
            assert not isinstance(app.screen, loading.LoadingScreen)
            await pilot.pause()
            assert app.loading.done == len(cut)
            assert app.source is not None
            assert len(app.source.log) == len(made.samples) - 1 == app.model.agg.samples
            assert app.query_one(HotTable).samples == app.model.agg.samples
            warnings = [n for n in app._notifications if "cut off" in n.message]
            assert len(warnings) == 1 and "line" in warnings[0].message

    asyncio.run(run())


def test_q_quits_while_the_file_loads(tmp_path: Path, held_reader: threading.Event) -> None:
    path = tmp_path / "slow.out"
    bigprofile.generate(path, samples=3000, stacks=500, seed=11)

    async def run() -> loading.FileViewApp:
        app = loading.FileViewApp(path)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, loading.LoadingScreen)
            await pilot.press("q")
            await pilot.pause()
            assert not app.is_running
        held_reader.set()  # the reading goes on, and stops at its first chunk
        return app

    app = asyncio.run(run())
    assert app.load_error is None
    assert app.return_code == 0
    # It quit before the file was read: the profile shown is still the empty placeholder.
    assert app.source is not None and len(app.source.log) == 0
