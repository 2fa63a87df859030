"""Native frames (`--native`) in files: Rprof.out, collapsed, speedscope and pprof."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

from test_formats import parse_collapsed
from test_formats import speedscope_validator

from sampler import pprof
from sampler.export import write_collapsed
from sampler.export import write_speedscope
from sampler.mixed import native_library
from sampler.model import Stack
from sampler.pprof import ProfileInfo
from sampler.pprof import write_pprof
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import parse_rprof

MIXED = Stack(
    (
        "<Native:my_leaf>",
        "<Native:my_c_fun>",
        "<Native:libR.so+0x102400>",
        ".C",
        "inner_r",
        "outer_r",
    )
)
PLAIN = Stack(("f", "g"))


def test_library_is_read_from_unresolved_labels_only() -> None:
    assert native_library("libR.so+0x102400") == "libR.so"
    assert native_library("my_c_fun") == ""
    assert native_library("operator+") == ""  # a C++ symbol with a plus in it


def test_rprof_file_round_trips_native_frames() -> None:
    out = io.StringIO()
    writer = RprofWriter(out, 10000, RprofOptions())
    for stack in (MIXED, MIXED, PLAIN):
        writer.add(stack)

    text = out.getvalue()
    assert '"<Native:my_c_fun>" "<Native:libR.so+0x102400>" ".C"' in text
    log = parse_rprof(text).log
    assert [stack.names for stack in log.iter_stacks()] == [MIXED.names] * 2 + [PLAIN.names]


def test_collapsed_keeps_the_native_spelling() -> None:
    out = io.StringIO()
    write_collapsed(out, [MIXED, PLAIN, MIXED])
    stacks = parse_collapsed(out.getvalue())
    assert stacks[tuple(reversed(MIXED.names))] == 2
    assert stacks[("g", "f")] == 1


def test_speedscope_names_native_frames_by_label_and_library() -> None:
    out = io.StringIO()
    write_speedscope(out, [MIXED, PLAIN], 10000, name="t")
    document = json.loads(out.getvalue())
    speedscope_validator().validate(document)
    frames = document["shared"]["frames"]
    assert {"name": "my_c_fun", "file": "[native]"} in frames
    assert {"name": "libR.so+0x102400", "file": "libR.so"} in frames
    assert {"name": "inner_r"} in frames
    assert not any(frame["name"].startswith("<Native:") for frame in frames)


def _parse_pprof(data: bytes) -> Any:
    profile = pprof._Profile()  # the message class the writer fills
    profile.ParseFromString(gzip.decompress(data))
    return profile


def test_pprof_puts_native_frames_in_mappings_and_r_frames_in_none() -> None:
    out = io.BytesIO()
    write_pprof(out, [MIXED, PLAIN], 10000, RprofOptions(), ProfileInfo())
    profile = _parse_pprof(out.getvalue())
    strings = list(profile.string_table)
    mappings = {m.id: strings[m.filename] for m in profile.mapping}
    functions = {f.id: strings[f.name] for f in profile.function}
    where = {
        functions[location.line[0].function_id]: mappings.get(location.mapping_id, "")
        for location in profile.location
    }
    assert where == {
        "my_leaf": "[native]",
        "my_c_fun": "[native]",
        "libR.so+0x102400": "libR.so",
        ".C": "",
        "inner_r": "",
        "outer_r": "",
        "f": "",
        "g": "",
    }
