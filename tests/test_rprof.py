"""Rprof.out writing and reading, against R's exact format (pure logic; R's own reading of
xrtop's files is tested in test_record.py and test_ground_truth.py)."""

from __future__ import annotations

import io

import pytest

from sampler.errors import RprofFormatError
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import parse_rprof


def write(stacks: list[Stack], options: RprofOptions, interval: int = 10000) -> str:
    out = io.StringIO()
    RprofWriter(out, interval, options).add_all(stacks)
    return out.getvalue()


def test_plain_file_is_exactly_what_r_writes() -> None:
    text = write(
        [Stack(("lst$g", "run", "source")), Stack(()), Stack(('x[["g"]]',))], RprofOptions()
    )
    # No line for an empty sample (a blank line breaks summaryRprof); a space ends each line.
    assert text == 'sample.interval=10000\n"lst$g" "run" "source" \n"x[["g"]]" \n'


def test_line_profiling_tokens_and_file_lines_sit_where_r_puts_them() -> None:
    stack = Stack(("busy", "run"), sites=(("a.R", 3), ("a.R", 8), ("b.R", 22)))
    text = write([stack], RprofOptions(lines=True, gc=True))
    assert text.splitlines() == [
        "GC profiling: line profiling: sample.interval=10000",
        "#File 1: a.R",
        "#File 2: b.R",
        '1#3 "busy" 1#8 "run" 2#22 ',
    ]


def test_gc_marker_first_and_idle_only_when_asked() -> None:
    stacks = [Stack(("f",), gc=True), Stack(("Sys.sleep",), idle=True)]
    assert write(stacks, RprofOptions(gc=True)).splitlines()[1:] == ['"<GC>" "f" ']
    assert len(write(stacks, RprofOptions(gc=True, idle=True)).splitlines()) == 3


def test_a_stack_written_again_is_the_same_line_and_its_files_come_once() -> None:
    # GIVEN one stack object written again and again (the sampler hands over the same object
    # each time it recognises a stack), an equal but distinct one, and a new one
    stack = Stack(("busy", "run"), sites=(("a.R", 3), ("a.R", 8), ("b.R", 22)))
    equal = Stack(("busy", "run"), sites=(("a.R", 3), ("a.R", 8), ("b.R", 22)))
    other = Stack(("idle",), sites=(("c.R", 1), None), idle=True)
    out = io.StringIO()
    writer = RprofWriter(out, 10000, RprofOptions(lines=True))
    written = [writer.add(s) for s in (stack, stack, equal, other, stack, other)]
    # THEN every sample of it is the same line, after its `#File` lines, which come once
    assert out.getvalue().splitlines() == [
        "line profiling: sample.interval=10000",
        "#File 1: a.R",
        "#File 2: b.R",
        *['1#3 "busy" 1#8 "run" 2#22 '] * 4,
    ]
    # AND the idle sample writes nothing (and no `#File` line), each time
    assert written == [True, True, True, False, True, False]
    assert writer.samples_written == 4
    # AND the byte count is the file's
    assert writer.bytes_written == len(out.getvalue().encode())


@pytest.mark.parametrize("lines", [False, True])
def test_round_trip(lines: bool) -> None:
    stacks = [
        Stack(("f", "g"), sites=(("a.R", 1), ("a.R", 2), None) if lines else ()),
        Stack(('x[["g"]]', "base::Reduce"), sites=(None, ("b.R", 5), None) if lines else ()),
        Stack(("h",), gc=True, sites=(None, None) if lines else ()),
    ]
    parsed = parse_rprof(write(stacks, RprofOptions(lines=lines, gc=True)))
    assert parsed.stacks == stacks
    assert parsed.interval_us == 10000


def test_reads_r_own_memory_profiling_file() -> None:
    text = (
        "memory profiling: sample.interval=5000\n"
        ':402005:2601958:33221328:0:"busy" "<Anonymous>" "run" \n'
    )
    parsed = parse_rprof(text)
    assert parsed.memory and parsed.stacks[0].names == ("busy", "<Anonymous>", "run")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", 1),
        ("hello\n", 1),
        ('sample.interval=10000\n"f" \n\n"g" \n', 3),
        ('sample.interval=10000\n"f" "g\n', 2),
        ('line profiling: sample.interval=10000\n3#4 "f" \n', 2),
        ('sample.interval=10000\n"f" junk\n', 2),
    ],
    ids=["empty", "no-header", "blank-line", "unclosed-quote", "unknown-file", "bad-token"],
)
def test_bad_files_name_the_line(text: str, line: int) -> None:
    with pytest.raises(RprofFormatError) as err:
        parse_rprof(text, "x.out")
    assert err.value.line == line
    assert f"x.out:{line}:" in err.value.message
