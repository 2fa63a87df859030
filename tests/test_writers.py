"""The one writer (`xrtop.formats`): every command and the live view take their formats
from `FORMATS`, and a file is only ever seen whole."""

from __future__ import annotations

import io
from pathlib import Path

from sampler.model import SampleLog
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import read_rprof
from xrtop.cli import build_parsers
from xrtop.formats import FORMATS
from xrtop.formats import Profile
from xrtop.formats import save_profile
from xrtop.formats import write_profile
from xrtop.screens import export_prompt

FIB = Stack(("fib", "fib", "outer"))
IDLE = Stack(("Sys.sleep",), idle=True)


def choices(command: str) -> list[str]:
    parser = build_parsers()[command]
    (action,) = [a for a in parser._actions if "--format" in a.option_strings]
    return list(action.choices or ())


async def test_commands_and_the_export_prompt_offer_the_formats_of_the_table() -> None:
    # (async: on Python 3.9 a screen binds the running event loop when it is made)
    assert choices("record") == list(FORMATS)
    assert choices("convert") == [f.name for f in FORMATS.values() if f.convertible]
    assert "rprof" not in choices("convert"), "convert reads Rprof.out: nothing to convert"
    prompt = export_prompt()
    assert [(key, value) for key, _, value in prompt.choices] == [
        (f.export_key, f.name) for f in FORMATS.values() if f.export_key
    ]


def test_profile_of_log_starts_at_the_index_given() -> None:
    log = SampleLog(10_000)
    for i in range(5):
        log.add(IDLE if i < 2 else FIB, i / 100)
    profile = Profile.of_log(log, RprofOptions(), "x", start=2)
    assert list(profile.stacks) == [FIB] * 3 and profile.interval_us == 10_000


def test_a_whole_log_is_written_as_the_log_and_as_its_stacks_would_be() -> None:
    log = SampleLog(10_000)
    stacks = [FIB, IDLE, FIB, Stack(("g", "outer")), FIB]
    for i, stack in enumerate(stacks):
        log.add(stack, i / 100)
    whole = Profile.of_log(log, RprofOptions(idle=True), "x")
    assert whole.samples is log, "no copy, no re-interning"
    assert list(whole.stacks) == stacks
    for fmt in FORMATS:
        stream = io.BytesIO if FORMATS[fmt].binary else io.StringIO
        from_log: io.BytesIO | io.StringIO = stream()
        from_stacks: io.BytesIO | io.StringIO = stream()
        assert write_profile(from_log, fmt, whole) == 5, fmt
        write_profile(from_stacks, fmt, Profile(stacks, 10_000, RprofOptions(idle=True), "x"))
        assert from_log.getvalue() == from_stacks.getvalue(), fmt


def test_save_profile_writes_what_write_profile_writes_and_counts_it(tmp_path: Path) -> None:
    stacks = [FIB, FIB, IDLE]
    for fmt in FORMATS:
        profile = Profile(stacks, 10_000, RprofOptions(), "demo")
        binary = FORMATS[fmt].binary
        memory: io.BytesIO | io.StringIO = io.BytesIO() if binary else io.StringIO()
        written = write_profile(memory, fmt, profile)
        path = tmp_path / f"p.{FORMATS[fmt].suffix}"
        samples, size = save_profile(path, fmt, profile)
        assert samples == written == 2, fmt  # the idle sample is left out
        on_disk = path.read_bytes() if binary else path.read_text()
        assert on_disk == memory.getvalue() and size == path.stat().st_size
        assert not list(tmp_path.glob(".*.partial")), "renamed into place"
    assert [s.names for s in read_rprof(tmp_path / "p.out").stacks] == [FIB.names] * 2
