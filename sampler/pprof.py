"""pprof's profile.proto, gzipped: the format `go tool pprof`, Grafana Pyroscope and Parca read.

The message classes are built at import from a FileDescriptorProto declared below (the field
names and numbers of perftools.profiles in google/pprof's proto/profile.proto, Apache-2.0),
and serialised by Google's `protobuf` package: no generated code, so no protoc and no
generated-code/runtime version pairing to keep, on every protobuf release from 5.26 on.

A profile holds what the Rprof.out file of the same recording would (see `stack_frames`):
two sample types, `samples`/`count` and `cpu`/`nanoseconds` (`wall` when idle samples are
kept), one sample per distinct stack, leaf first; function names, and with line information
each function's file and the line executing in it; `<GC>` as the innermost frame of a sample
taken in GC when the file marks GC. The recording's start, duration and process ID come
from `ProfileInfo`.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import IO
from typing import Any
from typing import NamedTuple

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

from sampler.mixed import NATIVE_MAPPING
from sampler.mixed import is_native
from sampler.mixed import native_label
from sampler.mixed import native_library
from sampler.model import GC_NAME
from sampler.model import Stack
from sampler.rprof import RprofOptions

_PACKAGE = "perftools.profiles"
_F = descriptor_pb2.FieldDescriptorProto
#: (field, number, type, repeated): the type is a scalar's or another message's name.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "Profile": [
        ("sample_type", 1, "ValueType", True),
        ("sample", 2, "Sample", True),
        ("mapping", 3, "Mapping", True),
        ("location", 4, "Location", True),
        ("function", 5, "Function", True),
        ("string_table", 6, "string", True),
        ("drop_frames", 7, "int64", False),
        ("keep_frames", 8, "int64", False),
        ("time_nanos", 9, "int64", False),
        ("duration_nanos", 10, "int64", False),
        ("period_type", 11, "ValueType", False),
        ("period", 12, "int64", False),
        ("comment", 13, "int64", True),
        ("default_sample_type", 14, "int64", False),
    ],
    "ValueType": [("type", 1, "int64", False), ("unit", 2, "int64", False)],
    "Sample": [
        ("location_id", 1, "uint64", True),
        ("value", 2, "int64", True),
        ("label", 3, "Label", True),
    ],
    "Label": [
        ("key", 1, "int64", False),
        ("str", 2, "int64", False),
        ("num", 3, "int64", False),
        ("num_unit", 4, "int64", False),
    ],
    "Mapping": [
        ("id", 1, "uint64", False),
        ("memory_start", 2, "uint64", False),
        ("memory_limit", 3, "uint64", False),
        ("file_offset", 4, "uint64", False),
        ("filename", 5, "int64", False),
        ("build_id", 6, "int64", False),
        ("has_functions", 7, "bool", False),
        ("has_filenames", 8, "bool", False),
        ("has_line_numbers", 9, "bool", False),
        ("has_inline_frames", 10, "bool", False),
    ],
    "Location": [
        ("id", 1, "uint64", False),
        ("mapping_id", 2, "uint64", False),
        ("address", 3, "uint64", False),
        ("line", 4, "Line", True),
        ("is_folded", 5, "bool", False),
    ],
    "Line": [("function_id", 1, "uint64", False), ("line", 2, "int64", False)],
    "Function": [
        ("id", 1, "uint64", False),
        ("name", 2, "int64", False),
        ("system_name", 3, "int64", False),
        ("filename", 4, "int64", False),
        ("start_line", 5, "int64", False),
    ],
}
_SCALARS = {
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
}


def _profile_class() -> Any:
    """The Profile message class, from a descriptor pool of its own."""
    file = descriptor_pb2.FileDescriptorProto(
        name="xrtop/pprof/profile.proto", package=_PACKAGE, syntax="proto3"
    )
    for message, fields in _MESSAGES.items():
        declared = file.message_type.add(name=message)
        for name, number, kind, repeated in fields:
            field = declared.field.add(
                name=name,
                number=number,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{_PACKAGE}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Profile"))


_Profile = _profile_class()


class FrameKind(Enum):
    """What ran in a frame: R code (R's own `<GC>` marker included), or native code."""

    R = "R"
    NATIVE = "native"


class Frame(NamedTuple):
    """One frame as a profile shows it. A native frame's `library` is the shared object it
    ran in: its frames go into a pprof Mapping of that file, which marks them native."""

    name: str
    file: str = ""
    line: int = 0
    kind: FrameKind = FrameKind.R
    library: str = ""


def stack_frames(stack: Stack, options: RprofOptions) -> list[Frame]:
    """The frames of `stack`, innermost first, exactly as the Rprof.out file of the same
    options records them (none: the file has no line for it): idle samples only with
    `options.idle`, `<GC>` innermost only with `options.gc`, locations only with
    `options.lines`. Native frames, when the sampler reads them, become `FrameKind.NATIVE`
    frames here."""
    if stack.idle and not options.idle:
        return []
    frames = [
        _native_frame(name)
        if is_native(name)
        else (Frame(name, *(stack.site(i) or ("", 0))) if options.lines else Frame(name))
        for i, name in enumerate(stack.names)
    ]
    if stack.gc and options.gc:
        frames.insert(0, Frame(GC_NAME))
    return frames


def _native_frame(name: str) -> Frame:
    """A native frame (`sampler.mixed`): its label, in a mapping of its library where the
    label names one, else of NATIVE_MAPPING."""
    label = native_label(name)
    return Frame(label, kind=FrameKind.NATIVE, library=native_library(label) or NATIVE_MAPPING)


@dataclass(frozen=True)
class ProfileInfo:
    """What a profile says about its recording besides its samples."""

    #: Wall-clock start, nanoseconds since the epoch (0: unknown).
    start_ns: int = 0
    #: The recording's length; None: the samples' count times the interval.
    duration_ns: int | None = None
    #: The process sampled, a label on every sample (None: unknown, no label).
    pid: int | None = None
    comments: tuple[str, ...] = ()


class _Builder:
    """Fills a Profile message, giving each string, function and location one id."""

    def __init__(self) -> None:
        self.profile = _Profile()
        self.strings: dict[str, int] = {}
        self.functions: dict[tuple[str, str, FrameKind], int] = {}
        self.locations: dict[Frame, int] = {}
        self.mappings: dict[str, int] = {}
        self.string("")  # string_table[0] is always ""

    def string(self, text: str) -> int:
        index = self.strings.get(text)
        if index is None:
            index = self.strings[text] = len(self.strings)
            self.profile.string_table.append(text)
        return index

    def value_type(self, target: Any, kind: str, unit: str) -> None:
        target.type = self.string(kind)
        target.unit = self.string(unit)

    def mapping(self, library: str) -> int:
        number = self.mappings.get(library)
        if number is None:
            number = self.mappings[library] = len(self.mappings) + 1
            self.profile.mapping.add(id=number, filename=self.string(library), has_functions=True)
        return number

    def function(self, frame: Frame) -> int:
        key = (frame.name, frame.file, frame.kind)
        number = self.functions.get(key)
        if number is None:
            number = self.functions[key] = len(self.functions) + 1
            # No system name: an R name is not a linker's, and pprof would try to demangle
            # one (it turns `<GC>` into nothing).
            self.profile.function.add(
                id=number, name=self.string(frame.name), filename=self.string(frame.file)
            )
        return number

    def location(self, frame: Frame) -> int:
        number = self.locations.get(frame)
        if number is None:
            number = self.locations[frame] = len(self.locations) + 1
            location = self.profile.location.add(id=number)
            if frame.kind is FrameKind.NATIVE:
                location.mapping_id = self.mapping(frame.library)
            location.line.add(function_id=self.function(frame), line=frame.line)
        return number


def pprof_profile(
    stacks: Iterable[Stack], interval_us: int, options: RprofOptions, info: ProfileInfo
) -> tuple[bytes, int]:
    """The serialised (not yet gzipped) Profile of `stacks`, and the samples it holds."""
    builder = _Builder()
    profile = builder.profile
    time_kind = "wall" if options.idle else "cpu"
    builder.value_type(profile.sample_type.add(), "samples", "count")
    builder.value_type(profile.sample_type.add(), time_kind, "nanoseconds")
    builder.value_type(profile.period_type, time_kind, "nanoseconds")
    period = interval_us * 1000
    profile.period = period
    profile.default_sample_type = builder.string(time_kind)
    counts: Counter[tuple[int, ...]] = Counter()
    # A stack's location ids, by the stack object's identity: the log hands out the same
    # interned object for every sample of a stack. An entry holds its object.
    known: dict[int, tuple[Stack, tuple[int, ...]]] = {}
    for stack in stacks:
        hit = known.get(id(stack))
        if hit is None or hit[0] is not stack:
            ids = tuple(builder.location(frame) for frame in stack_frames(stack, options))
            hit = known[id(stack)] = (stack, ids)
        if hit[1]:
            counts[hit[1]] += 1
    pid_key = builder.string("pid") if info.pid is not None else 0
    pid_value = builder.string(str(info.pid)) if info.pid is not None else 0
    for ids, count in counts.items():
        sample = profile.sample.add(location_id=ids, value=(count, count * period))
        if info.pid is not None:
            sample.label.add(key=pid_key, str=pid_value)
    total = sum(counts.values())
    profile.time_nanos = info.start_ns
    profile.duration_nanos = info.duration_ns if info.duration_ns is not None else total * period
    profile.comment.extend(builder.string(text) for text in info.comments)
    data: bytes = profile.SerializeToString()
    return data, total


def write_pprof(
    out: IO[bytes],
    stacks: Iterable[Stack],
    interval_us: int,
    options: RprofOptions,
    info: ProfileInfo,
) -> int:
    """Write the gzipped profile of `stacks` to `out`; return the number of samples in it."""
    data, total = pprof_profile(stacks, interval_us, options, info)
    out.write(gzip.compress(data, mtime=0))
    return total
