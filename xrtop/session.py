"""A profiling session: a target, its sampler thread, the sample log, and the streamed file.

Shared by `xrtop record` and the live view, so both attach, launch, stream and summarise
the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING

import psutil

from sampler.childsignals import child_signals_unblocked
from sampler.errors import NotRProcessError
from sampler.errors import SampleError
from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.group import GroupSampler
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.pprof import ProfileInfo
from sampler.processes import ProcessSet
from sampler.processes import TracedProcess
from sampler.ptrace import Tracer
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.symbols import find_libr_mapping
from sampler.symbols import needs_libr
from sampler.symbols import read_maps
from sampler.target import Target
from sampler.target import attach
from sampler.thread import MAX_HZ
from sampler.thread import MIN_HZ
from sampler.thread import SamplerThread
from sampler.thread import State
from xrtop import __version__
from xrtop.formats import Profile

if TYPE_CHECKING:
    from xrtop.children import ChildStreams

FLUSH_EVERY = 0.5  # seconds: a kill -9 of xrtop loses at most about this much of the stream


class Wakeup:
    """Lets the main thread sleep until a signal handler or another thread wakes it.

    A bare lock rather than an Event: a signal handler runs in the main thread, perhaps
    while that thread is inside an Event's own methods holding the Event's internal lock,
    and setting the Event there would wait for ever. Releasing a bare lock never waits.
    """

    def __init__(self) -> None:
        """Start asleep: `wait()` blocks until `wake()`."""
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        """End the current or next `wait()` (safe from signal handlers and any thread)."""
        with contextlib.suppress(RuntimeError):  # woken already
            self._lock.release()

    def wait(self, seconds: float) -> None:
        """Sleep until `wake()` or `seconds` pass."""
        self._lock.acquire(timeout=seconds)


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample, shared by every command that samples."""

    rate_hz: float = 100.0
    blocking: bool = True
    poll_idle: bool = True  # idle CPUs poll while R is stopped, where allowed (IdlePolling)
    force_version: str | None = None
    options: RprofOptions = field(default_factory=RprofOptions)
    #: Sample every R process descended from the target too (`Session.processes`).
    subprocesses: bool = False
    #: Native frames among R's (`--native`); with `evaluator_frames`, R's evaluator's too.
    native: bool = False
    evaluator_frames: bool = False
    #: Stacks keep R's evaluator frames whatever `evaluator_frames` says (the live view,
    #: where V shows or hides them).
    keep_evaluator_frames: bool = False

    def __post_init__(self) -> None:
        """Reject rates xrtop cannot deliver."""
        if not MIN_HZ <= self.rate_hz <= MAX_HZ:
            raise UsageError(
                f"sampling rate {self.rate_hz:g} Hz is out of range",
                f"Use -F between {MIN_HZ:g} and {MAX_HZ:g} (default 100).",
            )

    @property
    def interval_us(self) -> int:
        """The sampling interval in microseconds, as Rprof.out's header states it."""
        return round(1e6 / self.rate_hz)


def check_duration(seconds: float | None) -> float | None:
    """Validate -d; raise UsageError when it is not a positive, finite duration."""
    if seconds is not None and not 0 < seconds < 1e7:
        raise UsageError(f"duration {seconds:g} s is out of range", "Use -d with seconds > 0.")
    return seconds


class StreamedFile:
    """Samples written to a file (or stdout) as they come, flushed at least once a second.

    Samples collect in memory and go out in whole lines: a flush writes everything pending
    and nothing else, so a `kill -9` of xrtop leaves a file that ends after a complete
    sample (R's readers accept it) and loses at most the last `FLUSH_EVERY` seconds. The
    sampler thread calls `add()`; any thread may call `tick()` so that samples still go out
    when the sampler has nothing new to write (an idle target, a late sample).
    """

    def __init__(self, out: IO[str], interval_us: int, options: RprofOptions) -> None:
        """Write the header now."""
        self.out = out
        self._pending = io.StringIO()
        self._lock = threading.Lock()
        self.writer = RprofWriter(self._pending, interval_us, options)
        self._last_flush = time.monotonic()
        self.error: str = ""
        self.closed = False
        self.flush()

    def add(self, stack: Stack) -> None:
        """Append one sample (called on the sampler thread)."""
        with self._lock:
            if self.error or self.closed:
                return
            self.writer.add(stack)
        self.tick()

    def tick(self) -> None:
        """Flush when the last flush is `FLUSH_EVERY` seconds old."""
        if time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write out every pending sample now; remember the first write error."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        text = self._pending.getvalue()
        if self.error or self.closed:
            return
        self._pending.seek(0)
        self._pending.truncate()
        try:
            if text:
                self.out.write(text)
            self.out.flush()
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) else str(err)
            self.error = f"writing samples failed: {reason}"

    def switch_to(self, out: IO[str]) -> int:
        """Finish the current file (flushed and closed) and go on in `out`, a new file, with
        no sample lost or repeated between the two (rotation: xrtop.rotation); return the
        samples written up to the switch."""
        with self._lock:  # one hold: a sample comes before the switch or after it
            self._flush_locked()
            written = self.writer.samples_written
            if self.out is not sys.stdout:
                with contextlib.suppress(OSError):
                    self.out.close()
            self.out = out
            self.writer.start_file()
            self._flush_locked()
        return written

    def close(self) -> None:
        """Flush and close (stdout is flushed, not closed); later samples are ignored."""
        self.flush()
        with self._lock:
            self.closed = True
            if self.out is not sys.stdout:
                with contextlib.suppress(OSError):
                    self.out.close()


def find_r_descendant(root: int) -> int | None:
    """The first process at or below `root` that maps libR.so or runs a (static) R binary.

    The executable counts, not the process name: R's shell front end `bin/R` is also
    named "R" while the shell runs it, just before it execs the real interpreter. Right
    after that exec the dynamic loader has not mapped libR.so yet, and libc may show in
    R's maps before libR does (seen in CI: the launch then attached to an R without
    R_GlobalContext), so an R binary counts without libR only when it needs none (a
    static R, built without libR.so).
    """
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return None
    for proc in procs:
        try:
            maps = read_maps(proc.pid)
            if find_libr_mapping(maps) is not None:
                return proc.pid
            if (
                os.path.basename(proc.exe()) == "R"
                and any(os.path.basename(m.path).startswith(("libc.so", "libc-")) for m in maps)
                and not needs_libr(f"/proc/{proc.pid}/exe")
            ):
                return proc.pid
        except (XrtopError, psutil.Error, OSError):
            continue
    return None


def r_children_hint(pid: int) -> str:
    """A hint naming R processes below `pid`, for a PID that is R's shell front end."""
    found = find_r_descendant(pid)
    if found is not None and found != pid:
        return f"Its child {found} runs R: use that PID."
    return "Give the PID of an R process (run xrtop alone to pick one from a list)."


class Launched:
    """A command xrtop started itself; its R process is found as soon as it appears."""

    def __init__(self, argv: list[str], *, quiet: bool = False) -> None:
        """Start `argv` with xrtop's stdin, stdout and stderr, or, when `quiet`, with no
        stdin and stdout+stderr into a new file, `output_path` (the live view: the
        program's output must not garble the screen)."""
        if not argv:
            raise UsageError("nothing to launch after --", "Example: xrtop -- Rscript script.R")
        self.argv = argv
        self.output_path = ""
        self._output: IO[bytes] | None = None
        if quiet:
            fd, self.output_path = tempfile.mkstemp(prefix="xrtop-output-", suffix=".log")
            self._output = os.fdopen(fd, "wb")
        try:
            with child_signals_unblocked():  # the program gets the mask it would get anyway
                if self._output is None:
                    self.process = subprocess.Popen(argv)
                else:
                    self.process = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=self._output,
                        stderr=subprocess.STDOUT,
                    )
        except OSError as err:
            self.close_output()
            raise UsageError(f"cannot start {shlex.join(argv)}: {err.strerror}") from None

    def wait_for_r(
        self, timeout: float = 30.0, cancel: threading.Event | None = None
    ) -> int | None:
        """The PID of the launched R interpreter as soon as it maps R (None when `cancel` is
        set first); raise NotRProcessError when the command runs no R."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                return None
            found = find_r_descendant(self.process.pid)
            if found is not None:
                return found
            if self.process.poll() is not None:
                raise NotRProcessError(
                    f"{shlex.join(self.argv)} exited (status {self.process.returncode}) "
                    "before an R interpreter started"
                )
            time.sleep(0.002)
        raise NotRProcessError(f"{shlex.join(self.argv)} started no R interpreter in {timeout:g} s")

    def adopt_status(self, pid: int, status: int | None) -> None:
        """Take the wait status the sampler's tracer reaped for `pid`.

        When the launched command is itself the traced R (Rscript execs R in place), the
        tracer's waitpid consumes its exit status, and `Popen` then reports 0 (ECHILD).
        """
        if status is not None and pid == self.process.pid:
            self.process.returncode = os.waitstatus_to_exitcode(status)

    def wait(self) -> int:
        """The command's exit code (128 + N when killed by signal N, as shells report)."""
        code = self.process.wait()
        return 128 - code if code < 0 else code

    def exited(self) -> bool:
        """Whether the command has ended."""
        return self.process.returncode is not None or self.process.poll() is not None

    def send(self, signum: int) -> None:
        """Pass a signal xrtop received on to the command."""
        with contextlib.suppress(OSError):
            if self.process.returncode is None:
                self.process.send_signal(signum)

    def terminate(self) -> None:
        """Stop the launched command and wait up to 5 s for it (when xrtop gives up on it)."""
        self.send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def close_output(self) -> str | None:
        """Close the program's output file (when `quiet`); return its path, or None when
        there is none or it is empty (an empty one is removed)."""
        if self._output is None:
            return None
        self._output.close()
        self._output = None
        if os.path.getsize(self.output_path):
            return self.output_path
        with contextlib.suppress(OSError):
            os.unlink(self.output_path)
        return None


#: What to tell a user whose R keeps no source references (Rscript's default).
NO_SOURCE_HINT = (
    "R keeps no source references in this process, so there are no line numbers: "
    "run the code with options(keep.source = TRUE) (e.g. source() it after setting that), "
    "and set R_KEEP_PKG_SOURCE=yes for package code."
)


def capability_notes(target: Target, options: RprofOptions) -> list[str]:
    """One line per thing asked for in `options` that this R build cannot give."""
    notes = []
    if options.gc and not target.gc_available:
        notes.append(
            f"GC marker unavailable for this R build (R {target.version_text}): "
            "no sample is marked <GC>."
        )
    if options.lines and target.hidden.bc_globals is None:
        notes.append(
            f"the line running inside byte-compiled functions is unavailable for this R build "
            f"(R {target.version_text}): call sites only."
        )
    return notes


def source_note(target: Target) -> str | None:
    """NO_SOURCE_HINT once lines were read long enough to know R keeps no srcrefs."""
    return NO_SOURCE_HINT if target.keeps_source is False else None


class StartupHold:
    """Holds a just-launched R in a ptrace stop while xrtop reads its binary and attaches.

    Attaching takes longer than R needs to start up, so without this the first statements
    of a short script would run unsampled. A ptrace stop (not SIGSTOP) is used because the
    kernel ends it by itself if xrtop dies, and it is never held longer than `limit`.
    `release()` resumes and detaches, so that the sampler thread can trace R in turn.
    """

    def __init__(self, pid: int, limit: float = 30.0) -> None:
        """Stop `pid` now (returns once it is stopped, or holding turned out impossible)."""
        self.pid = pid
        self.limit = limit
        self.exit_status: int | None = None
        self._held = threading.Event()
        self._release = threading.Event()
        # ptrace binds a tracee to one thread: this one seizes, stops, resumes and detaches.
        self._thread = threading.Thread(target=self._hold, name=f"xrtop-hold-{pid}", daemon=True)
        self._thread.start()
        self._held.wait(5.0)

    def _hold(self) -> None:
        try:
            tracer = Tracer(self.pid)
        except (XrtopError, SampleError):
            self._held.set()  # cannot hold it: attaching just races R's startup
            return
        try:
            with contextlib.suppress(SampleError, OSError):
                tracer.stop()
                self._held.set()
                self._release.wait(self.limit)
                tracer.resume()
        finally:
            tracer.detach()
            self.exit_status = tracer.exit_status
            self._held.set()

    def release(self) -> None:
        """Let R run on, untraced (waits until it is detached)."""
        self._release.set()
        self._thread.join(10.0)


def wall_ns(monotonic_seconds: float) -> int:
    """The wall-clock time, in nanoseconds since the epoch, of a `time.monotonic()` reading."""
    return time.time_ns() - round((time.monotonic() - monotonic_seconds) * 1e9)


class Session:
    """One target being sampled into a log, optionally streamed to a file."""

    def __init__(
        self,
        target: Target,
        sampling: SamplingOptions,
        *,
        duration: float | None = None,
    ) -> None:
        """Prepare the sampler; `start()` attaches."""
        self.target = target
        self.sampling = sampling
        self.log = SampleLog(sampling.interval_us)
        self.stream: StreamedFile | None = None
        self.ended = threading.Event()
        self._wakeup: Wakeup | None = None
        # Lines cost reads per sample: read them only when the output wants them.
        target.set_lines(sampling.options.lines)
        if sampling.native:
            keep = sampling.evaluator_frames or sampling.keep_evaluator_frames
            target.set_native(True, evaluator=keep)
        #: Every R process of the session, the target first (with --subprocesses; else None).
        self.processes: ProcessSet | None = None
        #: The children's streamed files (with --subprocesses and a streamed file).
        self.child_streams: ChildStreams | None = None
        make_sampler: Callable[..., SamplerThread] = SamplerThread
        if sampling.subprocesses:
            self.processes = ProcessSet(sampling.interval_us)
            make_sampler = functools.partial(
                GroupSampler, processes=self.processes, on_process=self._child_stream
            )
        self.thread = make_sampler(
            target,
            self.log,
            rate_hz=sampling.rate_hz,
            blocking=sampling.blocking,
            poll_idle=sampling.poll_idle,
            duration=duration,
            on_end=lambda _state: self._end(),
        )

    def _child_stream(self, process: TracedProcess) -> Callable[[Stack], None] | None:
        """Where child `process`'s samples are streamed (None: nowhere)."""
        streams = self.child_streams
        return streams.open(process) if streams is not None else None

    def _end(self) -> None:
        self.ended.set()
        if self._wakeup is not None:
            self._wakeup.wake()

    @classmethod
    def attach_pid(
        cls,
        pid: int,
        sampling: SamplingOptions,
        *,
        duration: float | None = None,
    ) -> Session:
        """Attach to `pid` (not started yet); raise an XrtopError with a fix when impossible."""
        try:
            target = attach(pid, force_version=sampling.force_version)
        except NotRProcessError as err:
            raise NotRProcessError(err.message, r_children_hint(pid)) from None
        return cls(target, sampling, duration=duration)

    def start(
        self, stream_to: IO[str] | None = None, *, where: str = "", wakeup: Wakeup | None = None
    ) -> None:
        """Start sampling, streaming each sample as Rprof.out to `stream_to` when given and
        waking `wakeup` (when given) once sampling ends.

        The one way every command starts a session. Raises UsageError, naming `where`
        (default: standard output), when not even the stream's header can be written, and
        the attach error (e.g. ptrace refused) in this thread; either way the session is
        stopped and `stream_to` closed.
        """
        self._wakeup = wakeup
        try:
            if stream_to is not None:
                if self.processes is not None and where:
                    from xrtop.children import ChildStreams  # (it builds on StreamedFile)

                    self.child_streams = ChildStreams(
                        where, self.sampling.interval_us, self.sampling.options
                    )
                stream = StreamedFile(stream_to, self.sampling.interval_us, self.sampling.options)
                self.stream = stream
                self.thread.on_sample = stream.add
                if stream.error:  # not even the header went out: say so before sampling
                    reason = stream.error.removeprefix("writing samples failed: ")
                    raise UsageError(
                        f"cannot write {where or 'standard output'}: {reason}",
                        "Choose a writable path with -o.",
                    )
            self.thread.start()
            self.thread.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop sampling and detach; close the streamed file."""
        self.thread.stop()
        if self.stream is not None:
            self.stream.close()
        if self.child_streams is not None:
            self.child_streams.close()

    @property
    def state(self) -> State:
        """The sampler's state."""
        return self.thread.state

    def span_ns(self, first: int = 0) -> tuple[int, int]:
        """When sample `first` was taken (0: when sampling began) and when sampling ended or
        now, if it goes on: wall clock, nanoseconds since the epoch."""
        stats = self.thread.stats()
        began = stats.started_at or time.monotonic()
        # (A sample's time counts from the first sample, a moment after sampling began.)
        if first == 0:
            offset = 0.0
        elif first < len(self.log):
            offset = self.log.times[first]
        else:  # no sample from `first` on yet
            offset = stats.elapsed
        return wall_ns(began + offset), wall_ns(began + stats.elapsed)

    def profile_info(self, start_ns: int, end_ns: int) -> ProfileInfo:
        """What a profile of this session's samples from `start_ns` to `end_ns` records
        besides them (pprof): the times, the process and xrtop's and R's versions."""
        target = self.target
        return ProfileInfo(
            start_ns=start_ns,
            duration_ns=max(0, end_ns - start_ns),
            pid=target.pid,
            comments=(f"xrtop {__version__}", f"R {target.version_text}, PID {target.pid}"),
        )

    def profile(self, start: int = 0, stop: int | None = None, *, span: tuple[int, int]) -> Profile:
        """Samples `start` to `stop` of the log, taken from `span[0]` to `span[1]` (wall
        clock, ns), as recorded (the sampling options): what `xrtop record` writes."""
        name = f"xrtop: R PID {self.target.pid}"
        info = self.profile_info(*span)
        profile = Profile.of_log(self.log, self.sampling.options, name, start, stop, info)
        if self.processes is None or start != 0 or stop is not None:
            return profile
        parts = tuple((p.label, p.log) for p in self.processes.sampled())
        return dataclasses.replace(profile, processes=parts)

    def summary(self) -> str:
        """A paragraph of what was collected and what it cost the target."""
        stats = self.thread.stats()
        parts = [
            f"xrtop: {stats.samples} samples of R {self.target.version_text} "
            f"(PID {self.target.pid}) in {stats.elapsed:.2f} s",
            f"requested {stats.requested_hz:g} Hz, achieved {stats.achieved_hz:.1f} Hz",
            f"{stats.idle} idle, {stats.gc} in GC, {stats.late} late",
        ]
        if stats.errors:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(stats.errors.items()))
            parts.append(f"errors: {kinds}")
        else:
            parts.append("no errors")
        times = self.thread.stop_times
        if len(times):
            ordered = sorted(times)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            parts.append(
                f"target stopped {statistics.fmean(times) * 1e6:.0f} us per sample on average "
                f"(median {statistics.median(times) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us)"
            )
        else:
            parts.append("target never stopped (--nonblocking)")
        if self.stream is not None:
            parts.append(f"{self.stream.writer.samples_written} samples written")
            if self.stream.error:
                parts.append(self.stream.error)
        state = self.thread.state
        if state is State.EXITED:
            parts.append("the target exited")
        if self.processes is not None:
            parts.append(self.processes.summary())
        return "; ".join(parts) + "."


def default_output_name(pid: int, suffix: str = "out") -> Path:
    """A new file name in the current directory, named after the PID and the time."""
    return new_stamped_path(f"xrtop-{pid}", suffix)


def new_stamped_path(base: str, suffix: str) -> Path:
    """`BASE-TIME.SUFFIX` in the current directory, with `-2`, `-3`... added while such a
    file exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(f"{base}-{stamp}.{suffix}")
    n = 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{stamp}-{n}.{suffix}")
    return path
