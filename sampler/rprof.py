"""Rprof.out, exactly as R's own `Rprof()` writes it, and a reader for any such file.

Format (R's eval.c `doprof`, read by `utils::summaryRprof` and profvis):
- line 1: optional `GC profiling: ` and `line profiling: ` prefixes (that order), then
  `sample.interval=<microseconds>`;
- with line profiling, `#File N: path` before the first sample that uses file N (1-based);
- one line per sample: an optional `"<GC>"`, with line profiling the bare `F#L` of the
  innermost function's current line, then each frame innermost first as `"name"`, each
  followed (line profiling) by the `F#L` of its call site. Tokens are separated by single
  spaces and every line ends with a space, as R's do. A sample with nothing to write writes
  no line: a blank line breaks summaryRprof.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sampler.errors import RprofFormatError
from sampler.model import EMPTY_STACK
from sampler.model import GC_NAME
from sampler.model import SampleLog
from sampler.model import SrcLoc
from sampler.model import Stack


@dataclass(frozen=True)
class RprofOptions:
    """What a file records: line tokens, the GC marker, and idle samples."""

    lines: bool = False
    gc: bool = False
    idle: bool = False


def header_line(interval_us: int, options: RprofOptions) -> str:
    """The first line of an Rprof.out file, newline included."""
    prefix = ("GC profiling: " if options.gc else "") + (
        "line profiling: " if options.lines else ""
    )
    return f"{prefix}sample.interval={int(interval_us)}\n"


#: Lines `RprofWriter` keeps formatted (a deep line is a few hundred bytes).
_KEEP_LINES = 4096


def _byte_length(text: str) -> int:
    """The size of `text` in the file (UTF-8; undecodable bytes of R's names kept as is)."""
    return len(text.encode("utf-8", "surrogateescape"))


class RprofWriter:
    """Writes samples to a text stream in Rprof.out format, one `write()` per sample."""

    def __init__(self, out: IO[str], interval_us: int, options: RprofOptions) -> None:
        """Write the header to `out` at once; samples follow with `add()`."""
        self.out = out
        self.options = options
        self.file_numbers: dict[str, int] = {}
        self.samples_written = 0
        self.bytes_written = 0
        # Each stack's line and its length in bytes, once written, by the stack object's
        # identity: the sampler hands over the same object each time it recognises a stack,
        # and formatting a deep one, or even hashing it, costs the sampler thread microseconds
        # per sample. A line is the same every time after the first, which alone carries
        # the `#File` lines. An entry holds its object, so that id cannot be reused.
        self._lines: dict[int, tuple[Stack, str, int]] = {}
        self._header = header_line(interval_us, options)
        self._emit(self._header)

    def start_file(self) -> None:
        """Begin the next file on the same stream (the caller has switched files under it):
        the header again and `#File` numbers afresh; `samples_written` counts on."""
        self.file_numbers.clear()
        self._lines.clear()  # a stack's first line in each file carries its `#File` lines
        self._emit(self._header)

    def _emit(self, text: str) -> None:
        self.out.write(text)
        self.bytes_written += _byte_length(text)

    def _token(self, loc: SrcLoc | None, new_files: list[str]) -> str:
        if loc is None:
            return ""
        number = self.file_numbers.get(loc[0])
        if number is None:
            number = len(self.file_numbers) + 1
            self.file_numbers[loc[0]] = number
            new_files.append(f"#File {number}: {loc[0]}\n")
        return f"{number}#{loc[1]} "

    def _format(self, stack: Stack) -> tuple[list[str], str]:
        """The `#File` lines `stack` introduces, and its sample line ("" when none)."""
        if stack.idle and not self.options.idle:
            return [], ""
        parts: list[str] = []
        new_files: list[str] = []
        if stack.gc and self.options.gc:
            parts.append(f'"{GC_NAME}" ')
        lines = self.options.lines and bool(stack.sites)
        if lines:
            parts.append(self._token(stack.sites[0], new_files))
        for i, name in enumerate(stack.names):
            parts.append(f'"{name}" ')
            if lines:
                parts.append(self._token(stack.site(i + 1), new_files))
        body = "".join(parts)
        return new_files, body + "\n" if body else ""

    def add(self, stack: Stack) -> bool:
        """Write one sample; return whether a line was written."""
        known = self._lines.get(id(stack))
        if known is not None and known[0] is stack:
            _, line, size = known
            if not line:
                return False
            self.out.write(line)
            self.bytes_written += size
        else:
            new_files, line = self._format(stack)
            if len(self._lines) >= _KEEP_LINES:
                self._lines.clear()
            self._lines[id(stack)] = stack, line, _byte_length(line)
            if not line:
                return False
            self._emit("".join(new_files) + line)
        self.samples_written += 1
        return True

    def add_all(self, stacks: Iterable[Stack]) -> None:
        """Write every stack in order."""
        for stack in stacks:
            self.add(stack)


def write_rprof(
    path: Path,
    log: SampleLog,
    options: RprofOptions,
    start: int = 0,
    stop: int | None = None,
) -> tuple[int, int]:
    """Write samples `start`..`stop` of `log` to `path`; return (samples, bytes) written.

    The file is written beside its final name and renamed into place, so a reader never sees
    half a file.
    """
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", encoding="utf-8", errors="surrogateescape") as out:
        writer = RprofWriter(out, log.interval_us, options)
        writer.add_all(log.iter_stacks(start, stop))
    tmp.replace(path)
    return writer.samples_written, writer.bytes_written


# ---------------------------------------------------------------------------------------------
# Reading
#
# A recording repeats its stacks: an hour of samples holds a few thousand distinct lines.
# The reader parses each distinct line once and keeps, per sample, only its stack id in the
# `SampleLog` (4 bytes, and 8 for its time), so time and memory grow with the distinct
# stacks, not with the samples. The file is read in chunks, never whole.

_HEADER = re.compile(
    r"^(?P<prefixes>(?:(?:memory|GC|line) profiling: )*)sample\.interval=(?P<us>\d+)\s*$"
)
_FILE_LINE = re.compile(r"^#File (\d+): (.*)$")
_MEMORY_PREFIX = re.compile(r"^:\d+:\d+:\d+:\d+:")
#: One token of a sample line: a quoted name, which ends at the first quote followed by a
#: space or the line's end (R does not escape quotes inside names: `x[["g"]]`), a location
#: `F#L`, or anything else (an error).
_TOKEN = re.compile(r'"(.*?)"(?= |$)|(\d+)#(\d+)(?= |$)|([^ ]+)')
#: Bytes read at a time (and between two progress reports).
CHUNK_BYTES = 1 << 20

#: Told (bytes read so far, the file's size) after every chunk; it may raise to stop reading.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RprofFile:
    """The contents of an Rprof.out file: its samples in a `SampleLog`, one interval apart.

    `warnings` holds one sentence per problem that did not stop the reading (a last line
    cut off mid-way, left out).
    """

    interval_us: int
    options: RprofOptions
    memory: bool
    log: SampleLog
    warnings: tuple[str, ...] = ()

    @property
    def stacks(self) -> list[Stack]:
        """Every sample's stack, in order (a list the size of the file's samples: for tests
        and small files; the log is the compact form)."""
        return list(self.log.iter_stacks())

    def to_log(self) -> SampleLog:
        """The samples as a `SampleLog` (the file's own, not a copy), one interval apart."""
        return self.log


class _Parser:
    """Parses an Rprof.out fed to it line by line, each distinct sample line once."""

    def __init__(self, path: str, header: str) -> None:
        """Start with the file's first line (without its end of line)."""
        self.path = path
        match = _HEADER.match(header)
        if match is None:
            raise RprofFormatError(
                path, 1, "the first line is not an Rprof header like 'sample.interval=20000'"
            )
        prefixes = match["prefixes"]
        self.lines = "line profiling" in prefixes
        self.gc = "GC profiling" in prefixes
        self.memory = "memory profiling" in prefixes
        interval = int(match["us"])
        if interval <= 0:
            raise RprofFormatError(path, 1, "the sample interval must be positive")
        self.log = SampleLog(interval)
        self.files: dict[int, str] = {}
        # Each distinct sample line (as read, memory columns taken off) and its stack id.
        self.known: dict[str, int] = {}
        self.number = 1  # the line last fed

    def feed(self, lines: list[str]) -> None:
        """Take in the next complete lines (without their ends of line)."""
        known, ids = self.known, array("I")
        for number, raw in enumerate(lines, start=self.number + 1):
            line = raw
            if self.memory:
                prefix = _MEMORY_PREFIX.match(raw)
                if prefix is not None:
                    line = raw[prefix.end() :]
                    if not line.strip():
                        # R writes the memory counters even when no function runs.
                        ids.append(self.log.intern(EMPTY_STACK))
                        continue
            sid = known.get(line)
            if sid is None:
                if self.lines and line.startswith("#File"):
                    file_match = _FILE_LINE.match(line.rstrip("\r"))
                    if file_match is not None:
                        self._file(int(file_match[1]), file_match[2])
                        continue
                sid = known[line] = self.log.intern(self._stack(line, number))
            ids.append(sid)
        self.number += len(lines)
        self.log.extend(ids)

    def _file(self, number: int, path: str) -> None:
        if self.files.setdefault(number, path) != path:
            # A number given a new file: the lines read so far meant the old one.
            self.files[number] = path
            self.known.clear()

    def _stack(self, raw: str, number: int) -> Stack:
        """The stack of one sample line."""
        line = raw.rstrip("\r")
        if not line.strip():
            raise RprofFormatError(self.path, number, "a blank line (R never writes one)")
        names: list[str] = []
        sites: list[SrcLoc | None] = [None]
        gc = False
        files = self.files
        for name, file_no, line_no, other in _TOKEN.findall(line):
            if other:
                problem = (
                    "a quoted name is not closed"
                    if other.startswith('"')
                    else f"unexpected token {other[:40]!r}"
                )
                raise RprofFormatError(self.path, number, problem)
            if file_no:
                path = files.get(int(file_no))
                if path is None:
                    raise RprofFormatError(
                        self.path, number, f"file {file_no} used before '#File {file_no}:'"
                    )
                sites[-1] = (path, int(line_no))
            elif name == GC_NAME and not names and not gc:
                gc = True
            else:
                names.append(name)
                sites.append(None)
        self.gc = self.gc or gc
        return Stack(tuple(names), tuple(sites) if self.lines else (), gc=gc)

    def finish(self, torn: str) -> RprofFile:
        """The file read, given its last line when that has no end of line ("" if none).

        R ends every line, so a last line without an end was cut off (R or the profiler
        killed, a full disk): it is left out with a warning, as its stack lost frames.
        """
        warnings: tuple[str, ...] = ()
        if torn:
            warnings = (
                f"{self.path}: line {self.number + 1} is cut off (the recording stopped "
                "in the middle of it); it was left out",
            )
        options = RprofOptions(self.lines, self.gc)
        return RprofFile(self.log.interval_us, options, self.memory, self.log, warnings)


def _binary(path: str) -> RprofFormatError:
    return RprofFormatError(path, 1, "this is a binary file, not an Rprof.out text file")


def parse_rprof(text: str, path: str = "<text>") -> RprofFile:
    """Parse Rprof.out text; raise RprofFormatError naming the first bad line."""
    if not text:
        raise RprofFormatError(path, 1, "the file is empty")
    if "\x00" in text:
        raise _binary(path)
    lines = text.split("\n")
    torn = lines.pop()  # "" when the text ends with an end of line
    if len(lines) == 0:  # the header alone, without an end of line
        lines, torn = [torn], ""
    parser = _Parser(path, lines[0].rstrip("\r"))
    parser.feed(lines[1:])
    return parser.finish(torn)


def _decode(data: bytes) -> str:
    """Text of complete lines: UTF-8, else Latin-1 (R writes names in the session's
    encoding; every byte is a Latin-1 character)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_rprof(path: Path, progress: Progress | None = None) -> RprofFile:
    """Read and parse an Rprof.out file, chunk by chunk; raise RprofFormatError or OSError.

    `progress` is told the bytes read after each chunk.
    """
    name = str(path)
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        parser: _Parser | None = None
        done = 0
        rest = b""  # the start of a line that the next chunk completes
        while True:
            chunk = stream.read(CHUNK_BYTES)
            if not chunk:
                break
            done += len(chunk)
            if b"\x00" in chunk:
                raise _binary(name)
            data = rest + chunk
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            if end:
                lines = _decode(data[:end]).split("\n")
                lines.pop()  # after the last end of line
                if parser is None:
                    parser = _Parser(name, lines[0].rstrip("\r"))
                    del lines[0]
                parser.feed(lines)
            if progress is not None:
                progress(done, size)
    if parser is None:
        if not rest:
            raise RprofFormatError(name, 1, "the file is empty")
        parser, rest = _Parser(name, _decode(rest).rstrip("\r")), b""
    return parser.finish(_decode(rest))
