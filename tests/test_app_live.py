"""The live view over a real sampler on real R processes (Pilot, no terminal): the idle key
and the busy share against R's own account of its time, the GC share, and the note about
missing source references.

The host's R only: what is tested is the view's arithmetic over real samples; the sampler
itself is tested on every R version elsewhere (test_gc_idle.py, test_lines.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import RLauncher
from conftest import RRun
from conftest import wait_for
from textual.pilot import Pilot

from sampler.rprof import RprofOptions
from widgets.hot_table import HotTable
from xrtop.app import XrtopApp
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.sources import LiveSource

pytestmark = pytest.mark.live

#: Busy about half the time: 0.1 s of computing, then 0.1 s of Sys.sleep, over and over.
#: After each round it writes its own account to $HALF_BUSY_LOG (atomically): seconds spent
#: computing, and seconds since it started.
HALF_BUSY_R = """\
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
spin <- function(s) { until <- Sys.time() + s; while (Sys.time() < until) NULL }
work <- function() spin(0.1)
nap <- function() Sys.sleep(0.1)
work(); nap()
log <- Sys.getenv("HALF_BUSY_LOG")
path <- Sys.getenv("XRTOP_READY")
start <- Sys.time()
deadline <- start + seconds
busy <- 0
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (Sys.time() < deadline) {
  t <- Sys.time(); work(); busy <- busy + as.numeric(Sys.time() - t, units = "secs")
  nap()
  cat(busy, as.numeric(Sys.time() - start, units = "secs"), "\\n", file = paste0(log, ".tmp"))
  file.rename(paste0(log, ".tmp"), log)
}
"""


@asynccontextmanager
async def live_view(
    run: RRun, options: RprofOptions | None = None
) -> AsyncIterator[tuple[XrtopApp, Pilot[int]]]:
    """The app over a started session on `run`; detached at the end, whatever happens."""
    session = Session.attach_pid(run.pid, SamplingOptions(options=options or RprofOptions()))
    session.start()
    source = LiveSource(session)
    try:
        app = XrtopApp(source, refresh_s=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            yield app, pilot
    finally:
        source.stop()
    assert run.tracer() == 0


async def wait_until(pilot: Pilot[int], predicate: Callable[[], object], what: str) -> None:
    for _ in range(400):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def header(app: XrtopApp) -> str:
    return str(app.query_one("#status").render())


def shares(app: XrtopApp) -> list[float]:
    table = app.query_one(HotTable)
    return [float(c.rstrip("%")) for k in table.keys for c in table._cells(k)[:2]]


async def test_idle_key_and_busy_share_on_a_half_busy_r(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN an R computing about half of the time and sleeping the other half
    script = tmp_path / "half_busy.R"
    script.write_text(HALF_BUSY_R)
    account = tmp_path / "account"
    run = r_launcher.start(str(script), "60", extra_env={"HALF_BUSY_LOG": str(account)})

    def r_says() -> tuple[float, float]:
        def read() -> list[str] | None:
            try:
                return account.read_text().split()
            except FileNotFoundError:  # before the first round
                return None

        busy, elapsed = wait_for(read, 10, "R's account")
        return float(busy), float(elapsed)

    async with live_view(run) as (app, pilot):
        busy0, elapsed0 = r_says()
        await wait_until(pilot, lambda: len(app.model.agg.log) >= 300, "3 s of samples")
        # WHEN the display is paused, so that what is read next holds still
        await pilot.press("space")
        busy1, elapsed1 = r_says()
        agg = app.model.current()
        every = agg.consumed - agg.start
        # THEN by default the sleeping samples are out of the percentages
        assert 0 < agg.idle < every and agg.samples == every - agg.idle
        # (a sample can catch nap just before or after its system call: busy, but rare)
        assert agg.total["spin"] > 0.9 * agg.samples
        assert agg.total["nap"] < 0.03 * agg.samples
        # AND the busy share agrees with R's own account of its time (within 10 points;
        # R's account moves in 0.2 s rounds)
        busy = (every - agg.idle) / every
        assert 0.3 < busy < 0.7, busy
        assert busy == pytest.approx((busy1 - busy0) / (elapsed1 - elapsed0), abs=0.1)
        assert f"busy {100 * busy:.0f}%" in header(app)
        assert "idle hidden" in header(app)
        # WHEN the user presses i
        await pilot.press("i")
        agg = app.model.current()
        # THEN every sample counts, the sleeping ones under nap, and no share passes 100 %
        assert agg.include_idle and agg.samples == agg.consumed - agg.start
        assert agg.total["nap"] / agg.samples == pytest.approx(1 - busy, abs=0.1)
        assert all(0 <= s <= 100 for s in shares(app))
        assert "idle shown" in header(app) and f"busy {100 * busy:.0f}%" in header(app)
        # AND i again leaves them out again
        await pilot.press("i")
        assert app.model.current().samples == every - agg.idle


async def test_gc_share_of_an_allocating_r(r_launcher: RLauncher) -> None:
    # GIVEN an R that allocates all the time (R collects garbage many times a second)
    run = r_launcher.start("gc.R", "alloc", "60")
    async with live_view(run) as (app, pilot):
        assert app.source is not None and app.source.gc_available
        await wait_until(pilot, lambda: app.model.current().samples >= 150, "samples")
        await pilot.press("space")
        agg = app.model.current()
        # THEN the header's GC share is the share of samples shown that carry the marker
        assert 0 < agg.gc < agg.samples
        assert f"GC {100 * agg.gc / agg.samples:.1f}%" in header(app)


async def test_lines_without_source_references_are_explained_once(
    r_launcher: RLauncher,
) -> None:
    # GIVEN Rscript running a script as is (no source references: Rscript's default)
    run = r_launcher.start("busy.R", "60")
    async with live_view(run) as (app, pilot):
        # WHEN the user asks for lines
        await pilot.press("l")

        def told() -> list[str]:
            return [n.message for n in app._notifications if "keep.source = TRUE" in n.message]

        # THEN, once the sampler has read enough lines to know, the view says how to get them
        await wait_until(pilot, told, "the note about source references")
        assert "R_KEEP_PKG_SOURCE=yes" in told()[0]
        assert "no source references" in header(app)
        # AND says it only once, also across more refreshes and toggles
        await pilot.press("l", "l")
        await pilot.pause(0.5)
        assert len(told()) == 1


async def test_no_note_when_r_keeps_source_references(r_launcher: RLauncher) -> None:
    # GIVEN an R whose code keeps source references (lines.R sources itself with keep.source)
    run = r_launcher.start("lines.R", "60")
    async with live_view(run) as (app, pilot):
        await pilot.press("l")
        # THEN rows by line carry lines, and nothing is said about source references
        await wait_until(
            pilot,
            lambda: any(
                isinstance(r.key, tuple) and r.name == "inner" for r in app.model.current().rows()
            ),
            "inner by line",
        )
        await pilot.pause(1.0)
        assert not [n for n in app._notifications if "keep.source" in n.message]
        assert "source references" not in header(app)
