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

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sampler.errors import RprofFormatError
from sampler.model import GC_NAME
from sampler.model import SampleLog
from sampler.model import SrcLoc
from sampler.model import Stack


@dataclass(frozen=True, slots=True)
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

_HEADER = re.compile(
    r"^(?P<prefixes>(?:(?:memory|GC|line) profiling: )*)sample\.interval=(?P<us>\d+)\s*$"
)
_FILE_LINE = re.compile(r"^#File (\d+): (.*)$")
_MEMORY_PREFIX = re.compile(r"^:\d+:\d+:\d+:\d+:")
_LOCATION = re.compile(r"^(\d+)#(\d+)$")


@dataclass(frozen=True, slots=True)
class RprofFile:
    """The contents of an Rprof.out file."""

    interval_us: int
    options: RprofOptions
    memory: bool
    stacks: list[Stack]

    def to_log(self) -> SampleLog:
        """The samples as a `SampleLog`, spaced one interval apart."""
        return SampleLog.from_stacks(self.stacks, self.interval_us)


def _tokens(line: str, number: int, path: str) -> list[str]:
    """Split a sample line into quoted names (quotes kept) and bare location tokens."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        if line[i] == '"':
            # A name ends at the first quote followed by a space or the line's end: R does
            # not escape quotes inside names (`x[["g"]]`).
            j = i + 1
            while True:
                j = line.find('"', j)
                if j < 0:
                    raise RprofFormatError(path, number, "a quoted name is not closed")
                if j + 1 == n or line[j + 1] == " ":
                    break
                j += 1
            tokens.append(line[i : j + 1])
            i = j + 1
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            tokens.append(line[i:j])
            i = j
    return tokens


def parse_rprof(text: str, path: str = "<text>") -> RprofFile:
    """Parse Rprof.out text; raise RprofFormatError naming the first bad line."""
    if not text:
        raise RprofFormatError(path, 1, "the file is empty")
    if "\x00" in text:
        raise RprofFormatError(path, 1, "this is a binary file, not an Rprof.out text file")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    match = _HEADER.match(lines[0])
    if match is None:
        raise RprofFormatError(
            path, 1, "the first line is not an Rprof header like 'sample.interval=20000'"
        )
    prefixes = match["prefixes"]
    options = RprofOptions(lines="line profiling" in prefixes, gc="GC profiling" in prefixes)
    memory = "memory profiling" in prefixes
    interval = int(match["us"])
    if interval <= 0:
        raise RprofFormatError(path, 1, "the sample interval must be positive")
    files: dict[int, str] = {}
    stacks: list[Stack] = []
    seen_gc = False
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if options.lines:
            file_match = _FILE_LINE.match(line)
            if file_match:
                files[int(file_match[1])] = file_match[2]
                continue
        if memory:
            line, prefixed = _MEMORY_PREFIX.subn("", line, count=1)
            if prefixed and not line.strip():
                # R writes the memory counters even when no function runs (top level).
                stacks.append(Stack(()))
                continue
        if not line.strip():
            raise RprofFormatError(path, number, "a blank line (R never writes one)")
        names: list[str] = []
        sites: list[SrcLoc | None] = [None]
        gc = False
        for token in _tokens(line, number, path):
            if token.startswith('"'):
                name = token[1:-1]
                if name == GC_NAME and not names and not gc:
                    gc = True
                    continue
                names.append(name)
                sites.append(None)
                continue
            loc = _LOCATION.match(token)
            if loc is None:
                raise RprofFormatError(path, number, f"unexpected token {token[:40]!r}")
            file_no = int(loc[1])
            if file_no not in files:
                raise RprofFormatError(
                    path, number, f"file {file_no} used before '#File {file_no}:'"
                )
            sites[-1] = (files[file_no], int(loc[2]))
        seen_gc = seen_gc or gc
        stacks.append(
            Stack(tuple(names), tuple(sites) if options.lines else (), gc=gc),
        )
    return RprofFile(interval, RprofOptions(options.lines, options.gc or seen_gc), memory, stacks)


def read_rprof(path: Path) -> RprofFile:
    """Read and parse an Rprof.out file; raise RprofFormatError or OSError."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if b"\x00" in data:
            raise RprofFormatError(
                str(path), 1, "this is a binary file, not an Rprof.out"
            ) from None
        text = data.decode("latin-1")
    return parse_rprof(text, str(path))
