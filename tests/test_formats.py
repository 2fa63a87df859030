"""Every output format checked by a real consumer: Rprof.out by R's own summaryRprof (and
byte for byte against files R's Rprof wrote), speedscope by its published JSON schema,
collapsed stacks parsed back; `xrtop convert` on xrtop's files and on R's own."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
from conftest import RLauncher
from conftest import rscript
from test_record import summary_numbers
from test_record import summary_rprof
from test_record import xrtop

from sampler.export import write_collapsed
from sampler.export import write_speedscope
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import read_rprof

DATA = Path(__file__).parent / "data"
SCHEMA = DATA / "speedscope-schema-1.25.0.json"
ORIGIN = DATA / "speedscope-schema-origin.json"


def speedscope_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """Collapsed stacks read back: frames outermost first -> samples."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        match = re.fullmatch(r"(.+) (\d+)", line)
        assert match, f"not a collapsed-stack line: {line!r}"
        frames = tuple(match[1].split(";"))
        assert frames not in stacks, "each distinct stack appears once"
        stacks[frames] = int(match[2])
    return stacks


def speedscope_stacks(document: dict) -> list[tuple[str, ...]]:  # type: ignore[type-arg]
    """The samples of a speedscope document as frame names, outermost first."""
    names = [frame["name"] for frame in document["shared"]["frames"]]
    (profile,) = document["profiles"]
    return [tuple(names[i] for i in sample) for sample in profile["samples"]]


def function_samples(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    """Per function, the samples it appears in (once per sample, as summaryRprof counts)."""
    counts: Counter[str] = Counter()
    for frames, n in stacks.items():
        for name in set(frames):
            counts[name] += n
    return counts


def r_totals_in_samples(path: Path, interval_s: float) -> Counter[str]:
    """summaryRprof's total time per function, in samples."""
    summary = summary_rprof(path)
    return Counter({k: round(v / interval_s) for k, v in summary.total.items()})


# ---------------------------------------------------------------------------------------------
# The vendored schema


def test_vendored_schema_is_the_published_file() -> None:
    origin = json.loads(ORIGIN.read_text())
    assert origin["package"] == "speedscope" and origin["version"] in SCHEMA.name
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == origin["sha256"]
    speedscope_validator()  # itself a valid draft-07 schema


def test_schema_rejects_a_broken_document() -> None:
    # The check can fail: a sampled profile without weights is not speedscope's format.
    document = _document([Stack(("f", "g"))])
    del document["profiles"][0]["weights"]
    assert list(speedscope_validator().iter_errors(document))


def _document(stacks: list[Stack]) -> dict:  # type: ignore[type-arg]
    out = io.StringIO()
    write_speedscope(out, stacks, 10000, name="t")
    document: dict = json.loads(out.getvalue())  # type: ignore[type-arg]
    return document


# ---------------------------------------------------------------------------------------------
# Recording straight into each format


def test_record_speedscope_validates_and_keeps_the_call_order(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "busy.speedscope.json"
    done = xrtop(
        "record", "-p", str(run.pid), "-F", "200", "-d", "1.5", "--format", "speedscope",
        "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    speedscope_validator().validate(document)
    stacks = speedscope_stacks(document)
    numbers = summary_numbers(done.stderr)
    assert numbers["samples"] - numbers["idle"] <= len(stacks) <= numbers["samples"]
    # Outermost first, as speedscope's sampled profiles want: outer -> middle -> fib...
    in_fib = [s for s in stacks if "fib" in s]
    assert len(in_fib) > 0.8 * len(stacks)
    assert all(s[:3] == ("outer", "middle", "fib") for s in in_fib)
    (profile,) = document["profiles"]
    assert sum(profile["weights"]) == pytest.approx(len(stacks) * 0.005)
    assert profile["unit"] == "seconds" and profile["endValue"] >= profile["startValue"]


def test_record_collapsed_parses_back_with_matching_totals(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "busy.collapsed.txt"
    done = xrtop(
        "record", "-p", str(run.pid), "-F", "200", "-d", "1.5", "--format", "collapsed",
        "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stacks = parse_collapsed(out.read_text())
    total = sum(stacks.values())
    numbers = summary_numbers(done.stderr)
    assert numbers["samples"] - numbers["idle"] <= total <= numbers["samples"]
    in_fib = {frames: n for frames, n in stacks.items() if "fib" in frames}
    assert sum(in_fib.values()) > 0.8 * total
    assert all(frames[:3] == ("outer", "middle", "fib") for frames in in_fib)


# ---------------------------------------------------------------------------------------------
# Converting Rprof.out: xrtop's own and R's


def test_convert_of_a_recording_agrees_with_summaryrprof(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN an Rprof.out recorded by xrtop
    run = r_launcher.start("shapes.R", "60")
    rprof = tmp_path / "shapes.out"
    done = xrtop("record", "-p", str(run.pid), "-F", "200", "-d", "1.5", "-o", str(rprof))
    assert done.returncode == 0, done.stderr
    # WHEN it is converted to both flame-graph formats
    collapsed = xrtop("convert", str(rprof), "--format", "collapsed")
    speedscope = xrtop("convert", str(rprof), "--format", "speedscope")
    assert collapsed.returncode == 0 and speedscope.returncode == 0
    # THEN every function is in exactly as many samples as R's summaryRprof says
    expected = r_totals_in_samples(rprof, 0.005)
    assert sum(expected.values()) > 0
    assert function_samples(parse_collapsed(collapsed.stdout)) == expected
    document = json.loads(speedscope.stdout)
    speedscope_validator().validate(document)
    assert function_samples(Counter(speedscope_stacks(document))) == expected


R_PROFILES = r"""
dir <- "{dir}"
src <- file.path(dir, "work.R")
writeLines(c(
  "work <- function(n) {{",
  "  x <- list()",
  "  for (i in seq_len(n)) x[[i]] <- rnorm(50)",
  "  sum(unlist(x))",
  "}}",
  "outer <- function(seconds) {{",
  "  t <- proc.time()[[3]]",
  "  while (proc.time()[[3]] - t < seconds) work(2000)",
  "}}"), src)
source(src, keep.source = TRUE)
outer(0.1)
Rprof(file.path(dir, "plain.out"), interval = 0.01)
outer(1); Rprof(NULL)
Rprof(file.path(dir, "gcline.out"), interval = 0.01, gc.profiling = TRUE, line.profiling = TRUE)
outer(1); Rprof(NULL)
Rprof(file.path(dir, "all.out"), interval = 0.01, memory.profiling = TRUE,
      gc.profiling = TRUE, line.profiling = TRUE)
outer(1); Rprof(NULL)
Rprof(file.path(dir, "toplevel.out"), interval = 0.01, memory.profiling = TRUE)
x <- 0; t <- proc.time()[[3]]; while (proc.time()[[3]] - t < 0.5) x <- x + 1
outer(0.5); Rprof(NULL)
"""


@pytest.fixture(scope="module")
def r_own_profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files written by R's own Rprof: plain; GC + lines; memory + GC + lines; memory with
    time at top level (lines that carry only the memory counters)."""
    where = tmp_path_factory.mktemp("rprof")
    rscript(R_PROFILES.format(dir=where))
    return where


@pytest.mark.live
def test_rprof_writer_reproduces_rs_own_files_byte_for_byte(r_own_profiles: Path) -> None:
    for name in ("plain.out", "gcline.out"):
        text = (r_own_profiles / name).read_text()
        profile = read_rprof(r_own_profiles / name)
        out = io.StringIO()
        RprofWriter(out, profile.interval_us, profile.options).add_all(profile.stacks)
        assert out.getvalue() == text, name
    # (the GC and line forms really were exercised)
    gcline = (r_own_profiles / "gcline.out").read_text()
    assert gcline.startswith("GC profiling: line profiling: ") and "#File 1: " in gcline


@pytest.mark.live
@pytest.mark.parametrize("name", ["plain.out", "gcline.out", "all.out", "toplevel.out"])
def test_convert_reads_rs_own_files(name: str, r_own_profiles: Path, tmp_path: Path) -> None:
    path = r_own_profiles / name
    if name == "toplevel.out":  # the case is really there: a line with counters only
        assert any(re.fullmatch(r"(:\d+){4}:", line) for line in path.read_text().split("\n"))
    expected = r_totals_in_samples(path, 0.01)
    assert expected["work"] > 0
    # collapsed, to a file
    out = tmp_path / "out.txt"
    done = xrtop("convert", str(path), "--format", "collapsed", "-o", str(out))
    assert done.returncode == 0, done.stderr
    collapsed = parse_collapsed(out.read_text())
    assert function_samples(collapsed) == expected
    assert all(frames[0] == "outer" for frames in collapsed if "work" in frames)
    # speedscope, to stdout
    done = xrtop("convert", str(path), "--format", "speedscope")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    speedscope_validator().validate(document)
    assert function_samples(Counter(speedscope_stacks(document))) == expected


def test_convert_refuses_what_is_not_an_rprof_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.out"
    bogus.write_text("hello\n")
    done = xrtop("convert", str(bogus), "--format", "collapsed")
    assert done.returncode == 7
    assert done.stderr.startswith("xrtop: ") and "Traceback" not in done.stderr
    missing = xrtop("convert", str(tmp_path / "missing.out"), "--format", "speedscope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("xrtop: ") and "Traceback" not in missing.stderr


# ---------------------------------------------------------------------------------------------
# Pure logic of the writers (hand-made stacks)


def test_collapsed_orders_frames_outermost_first_and_marks_gc() -> None:
    stacks = [
        Stack(("inner", "outer")),
        Stack(("inner", "outer")),
        Stack(("f",), gc=True),
        Stack(("a;b", "top level")),
        Stack(("waiting",), idle=True),
        Stack(()),
    ]
    out = io.StringIO()
    assert write_collapsed(out, stacks) == 4
    assert parse_collapsed(out.getvalue()) == Counter(
        {("outer", "inner"): 2, ("f", "<GC>"): 1, ("top level", "a:b"): 1}
    )
    with_idle = io.StringIO()
    assert write_collapsed(with_idle, stacks, idle=True) == 5


def test_speedscope_of_nothing_is_still_valid() -> None:
    document = _document([])
    speedscope_validator().validate(document)
    assert document["profiles"][0]["samples"] == []


def test_rprof_writer_writes_no_line_for_an_empty_sample() -> None:
    out = io.StringIO()
    writer = RprofWriter(out, 10000, RprofOptions())
    assert not writer.add(Stack(()))
    assert not writer.add(Stack(("sleep",), idle=True))
    assert writer.add(Stack(("f", "g")))
    assert out.getvalue() == 'sample.interval=10000\n"f" "g" \n'


def test_speedscope_with_lines_gives_file_and_line_per_frame() -> None:
    # g called f at a.R:8; f was running a.R:3; g's own caller is top level (no site)
    stack = Stack(("f", "g"), sites=(("a.R", 3), ("a.R", 8), None))
    out = io.StringIO()
    write_speedscope(out, [stack, stack], 10000, name="t", lines=True)
    document = json.loads(out.getvalue())
    speedscope_validator().validate(document)
    frames = document["shared"]["frames"]
    assert frames == [
        {"name": "g", "file": "a.R", "line": 8},
        {"name": "f", "file": "a.R", "line": 3},
    ]
    assert document["profiles"][0]["samples"] == [[0, 1], [0, 1]]
    collapsed = io.StringIO()
    write_collapsed(collapsed, [stack], lines=True)
    assert collapsed.getvalue() == "g (a.R:8);f (a.R:3) 1\n"
