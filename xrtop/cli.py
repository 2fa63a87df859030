"""The `xrtop` command line: the live view, `record`, `dump`, `view`, `convert` and `diff`.

Every user mistake becomes one clear message on standard error and a documented exit code
(see sampler.errors); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO
from typing import Any
from typing import NoReturn

import psutil

from sampler.capture import sample_once
from sampler.childsignals import queue_child_signals
from sampler.descendants import role_of
from sampler.diff import PRINT_LIMIT
from sampler.errors import EXIT_INTERNAL
from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.mixed import is_native
from sampler.pprof import ProfileInfo
from sampler.rprof import RprofOptions
from sampler.target import Target
from sampler.target import attach
from sampler.target import parse_pid
from sampler.target import parse_version
from sampler.thread import State
from xrtop import __version__
from xrtop.children import attach_descendants
from xrtop.children import check_subprocess_output
from xrtop.children import process_bench_stats
from xrtop.children import report_child_files
from xrtop.diff import cmd_diff
from xrtop.formats import FORMATS
from xrtop.formats import RPROF
from xrtop.formats import Profile
from xrtop.formats import close_output
from xrtop.formats import open_output
from xrtop.formats import rprof_file_info
from xrtop.formats import standard_output
from xrtop.formats import write_profile
from xrtop.progress import read_profile
from xrtop.progress import unreadable
from xrtop.rotation import Rotation
from xrtop.rotation import check_rotate
from xrtop.session import FLUSH_EVERY
from xrtop.session import Launched
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.session import StartupHold
from xrtop.session import Wakeup
from xrtop.session import capability_notes
from xrtop.session import check_duration
from xrtop.session import default_output_name
from xrtop.session import r_children_hint
from xrtop.session import source_note


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits with the usage code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}", f"See '{self.prog} --help'.")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    return value


def _sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-F",
        "--rate",
        type=_positive_float,
        default=100.0,
        metavar="HZ",
        help="samples per second (default 100, at most 2000)",
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="never stop the target; drop and count samples torn by its running",
    )
    parser.add_argument(
        "--no-cpu-poll",
        dest="poll_idle",
        action="store_false",
        help="let idle CPUs sleep while R is stopped (by default, as root, they poll "
        "through /dev/cpu_dma_latency so that R resumes at once)",
    )
    parser.add_argument(
        "--force-version",
        metavar="X.Y",
        help="read the target as R X.Y when its version cannot be detected",
    )
    _subprocesses_flag(parser)


def _subprocesses_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subprocesses",
        action="store_true",
        help="also sample every R process started from the target (mclapply, PSOCK, "
        "callr and future workers)",
    )


def _native_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    parser.add_argument(
        *names,
        "--native",
        dest="native",
        action="store_true",
        help="show native (C, C++, Fortran) frames among R's, in call order (x86-64)",
    )
    parser.add_argument(
        "--evaluator-frames",
        action="store_true",
        help="with --native, keep the frames of R's own evaluator (Rf_eval, bcEval, ...)",
    )


def _file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gc", action="store_true", help='mark samples taken in GC "<GC>"')
    parser.add_argument("--idle", action="store_true", help="keep samples where R waits")
    parser.add_argument(
        "--lines",
        action="store_true",
        help="record source lines (file#line) as Rprof(line.profiling = TRUE) does",
    )


def _record_parser() -> argparse.ArgumentParser:
    """`xrtop record`: xrprof's flags, the output format and rotation."""
    record = _Parser(
        prog="xrtop record",
        description="Record samples headless (xrprof's flags work unchanged). "
        "Use `xrtop record [options] -- Rscript script.R` to launch and record.",
    )
    record.add_argument("-p", "--pid", metavar="PID", help="the R process to record")
    _sampling_flags(record)
    record.add_argument(
        "-d",
        "--duration",
        type=_positive_float,
        metavar="SECS",
        help="stop after SECS seconds of wall time (default: until exit or ^C)",
    )
    record.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    record.add_argument("-v", "--verbose", action="store_true", help="say what happens")
    _native_flags(record, "-m")  # xrprof's -m: mixed R + native stacks
    names = list(FORMATS)
    record.add_argument(
        "--format",
        choices=names,
        default=names[0],
        help=f"{names[0]} (R's Rprof.out, default), {', '.join(names[1:-1])} or {names[-1]}",
    )
    record.add_argument(
        "--rotate",
        type=_positive_float,
        metavar="SECS",
        help="every SECS seconds (and on SIGHUP) complete the file and begin the next: "
        "-o prof.out writes prof.1.out, prof.2.out, ...",
    )
    _file_flags(record)
    return record


def build_parsers() -> dict[str, argparse.ArgumentParser]:
    """One parser per command; "" is the live view."""
    live = _Parser(
        prog="xrtop",
        description="Live, top-style sampling profiler for R. Run alone to pick an R process.",
        epilog="Commands: xrtop record | dump | view | convert | diff  (each has --help).",
    )
    live.add_argument("pid", nargs="?", help="the R process to watch")
    live.add_argument("-p", "--pid", dest="pid_flag", metavar="PID", help="same as PID")
    _sampling_flags(live)
    _native_flags(live)
    _file_flags(live)
    live.add_argument("-o", "--output", metavar="FILE", help="also stream samples to FILE")
    live.add_argument("--version", action="version", version=f"xrtop {__version__}")

    record = _record_parser()

    dump = _Parser(prog="xrtop dump", description="Print where R is right now.")
    dump.add_argument("pid", help="the R process")
    dump.add_argument("--json", action="store_true", help="machine-readable output")
    dump.add_argument("--nonblocking", action="store_true", help="do not stop the target")
    dump.add_argument("--force-version", metavar="X.Y")
    _subprocesses_flag(dump)
    _native_flags(dump)

    view = _Parser(prog="xrtop view", description="Open an Rprof.out file in the live view.")
    view.add_argument("file", help="an Rprof.out file (xrtop's or R's own)")

    convert = _Parser(prog="xrtop convert", description="Convert an Rprof.out file.")
    convert.add_argument("file", help="an Rprof.out file (xrtop's or R's own)")
    convert.add_argument(
        "--format", choices=[f.name for f in FORMATS.values() if f.convertible], required=True
    )
    convert.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    convert.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    diff = _Parser(
        prog="xrtop diff", description="Compare two profiles: what changed from BASE to NEW."
    )
    diff.add_argument("base", help="the profile before (an Rprof.out, xrtop's or R's own)")
    diff.add_argument("new", help="the profile after")
    diff.add_argument(
        "--print",
        dest="print_table",
        action="store_true",
        help=f"print the {PRINT_LIMIT} largest changes in total share instead of opening the view",
    )
    return {
        "": live,
        "record": record,
        "dump": dump,
        "view": view,
        "convert": convert,
        "diff": diff,
    }


def _sampling(args: argparse.Namespace) -> SamplingOptions:
    if args.force_version is not None:
        parse_version(args.force_version)  # a malformed X.Y is a usage error, found first
    _check_native(args)
    return SamplingOptions(
        rate_hz=args.rate,
        blocking=not args.nonblocking,
        poll_idle=args.poll_idle,
        force_version=args.force_version,
        subprocesses=args.subprocesses,
        options=RprofOptions(
            lines=getattr(args, "lines", False),
            gc=getattr(args, "gc", False),
            idle=getattr(args, "idle", False),
        ),
        native=args.native,
        evaluator_frames=args.evaluator_frames,
    )


def _check_native(args: argparse.Namespace) -> None:
    """--native needs the target stopped (its registers), and is what --evaluator-frames
    refines."""
    if args.native and args.nonblocking:
        raise UsageError(
            "--native needs R stopped for each sample (its registers): drop --nonblocking"
        )
    if args.evaluator_frames and not args.native:
        raise UsageError("--evaluator-frames goes with --native")


@contextlib.contextmanager
def _stop_on_signals(
    stop: threading.Event,
    received: list[int] | None = None,
    wakeup: Wakeup | None = None,
    on_hangup: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `stop` so that the output is finished cleanly,
    and wake `wakeup` (when given) to notice it at once.

    Each signal number is also appended to `received` (when given), so that a launched
    command can be handed the same signals. With `on_hangup`, SIGHUP calls it instead
    (rotation) and is xrtop's alone.
    """

    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP and on_hangup is not None:
            on_hangup()
            return
        stop.set()
        if received is not None:
            received.append(signum)
        if wakeup is not None:
            wakeup.wake()

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _sample_into(
    args: argparse.Namespace,
    sampling: SamplingOptions,
    session: Session,
    out: IO[Any],
    stop: threading.Event,
    wakeup: Wakeup,
    rotation: Rotation | None = None,
) -> bool:
    """Sample until -d ends, the target exits or `stop` is set; leave `out` complete and closed.

    Sleeps in `wakeup` meanwhile, which sampling's end wakes, and signals (`_stop_on_signals`).

    Rprof.out streams as samples come (a kill -9 of xrtop loses at most about a second);
    the other formats need every sample and are written at the end. Prints the summary.
    Returns False when writing the output failed. Raises the attach error when sampling
    could not start. With `rotation`, `out` is its first file and the files rotate.
    """
    try:
        streams = args.format == RPROF
        session.start(out if streams else None, where=args.output or "", wakeup=wakeup)
        stream = session.stream
        if rotation is not None:
            rotation.begin(session, out)
        if args.verbose:
            target = session.target
            notes = "; idle CPUs poll while R is stopped" if session.thread.polls_idle else ""
            if session.thread.shares_one_cpu:
                notes += "; R and xrtop share one CPU, so xrtop's work is taken from R's time"
            print(
                f"xrtop: sampling R {target.version_text} in PID {target.pid} at "
                f"{sampling.rate_hz:g} Hz ({target.binary.opened_as}){notes}",
                file=sys.stderr,
            )
        for note in capability_notes(session.target, sampling.options):
            print(f"xrtop: {note}", file=sys.stderr)
        # Wakes only to flush (every few samples, or with none coming: an idle target).
        while not stop.is_set() and not session.ended.is_set():
            wakeup.wait(FLUSH_EVERY if rotation is None else rotation.wait_time(FLUSH_EVERY))
            if rotation is not None and not rotation.poll():
                break
            if session.child_streams is not None:
                session.child_streams.tick()
            if stream is not None:
                stream.tick()
                if stream.error:  # e.g. the reader of a pipe went away: nobody gets more
                    break
    finally:
        # Detaches (the target runs on untraced) and finishes the streamed file.
        session.stop()
    ok = True
    if rotation is not None:
        ok = rotation.finish()
    elif stream is None:
        try:
            write_profile(out, args.format, session.profile(span=session.span_ns()))
            out.flush()
        except OSError as err:
            print(f"xrtop: writing the profile failed: {err.strerror}", file=sys.stderr)
            ok = False
        finally:
            with contextlib.suppress(OSError):
                close_output(out)
    elif stream.error:
        ok = False
    print(session.summary(), file=sys.stderr)
    _write_bench_stats(session)
    if session.child_streams is not None:
        ok = report_child_files(session.child_streams) and ok
    if rotation is not None:
        print(rotation.summary(), file=sys.stderr)
    if sampling.options.lines and (hint := source_note(session.target)) is not None:
        print(f"xrtop: {hint}", file=sys.stderr)
    return ok


def cmd_record(args: argparse.Namespace, command: list[str] | None) -> int:
    """`xrtop record`: sample until the duration ends, the target exits, or a signal."""
    sampling = _sampling(args)
    duration = check_duration(args.duration)
    if command is not None and args.pid:
        raise UsageError("give either -p PID or a command after --, not both")
    if command is None and not args.pid:
        raise UsageError(
            "record needs -p PID or a command after --",
            "Example: xrtop record -p 1234 -o Rprof.out",
        )
    check_rotate(args.rotate, args.output, launched=command is not None)
    check_subprocess_output(args.subprocesses, args.format, args.output, args.rotate, command)
    if command is not None:
        return _record_launched(args, command, sampling, duration)
    pid = parse_pid(args.pid)
    # Attach before touching the output: a wrong PID leaves no file behind.
    session = Session.attach_pid(pid, sampling, duration=duration)
    stop, wakeup = threading.Event(), Wakeup()
    rotation = _rotation(args, wakeup)
    path = rotation.first_file(args.output) if rotation is not None else args.output
    # Only a file xrtop creates may be removed again: -o /dev/null or an existing file
    # the user named must survive a failed start.
    created = bool(path) and not os.path.lexists(path)
    out = open_output(path, args.format) if path else standard_output(args.format)
    try:
        with _stop_on_signals(stop, wakeup=wakeup, on_hangup=_on_hangup(rotation)):
            ok = _sample_into(args, sampling, session, out, stop, wakeup, rotation)
    except XrtopError:
        if path:  # sampling never started: no half-made file
            with contextlib.suppress(OSError):
                out.close()
            if created:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        raise
    if session.state is State.FAILED:  # a bug ended sampling early: say so, keep the file
        print(
            f"xrtop: internal error: sampling stopped early ({session.thread.stats().last_error})",
            file=sys.stderr,
        )
        print("Please report this at the xrtop issue tracker.", file=sys.stderr)
        return EXIT_INTERNAL
    return 0 if ok else 1


def _rotation(args: argparse.Namespace, wakeup: Wakeup) -> Rotation | None:
    """The rotation --rotate asks for (None without it)."""
    if args.rotate is None:
        return None
    return Rotation(args.rotate, args.format, wakeup, verbose=args.verbose)


def _on_hangup(rotation: Rotation | None) -> Callable[[], None] | None:
    """What SIGHUP does: rotate when rotating (else it ends the recording)."""
    return rotation.request if rotation is not None else None


def _write_bench_stats(session: Session) -> None:
    """For bench/run.py only: the sampler's own accounting as JSON, when XRTOP_BENCH_STATS
    names a file (undocumented on purpose: its fields may change with the benchmark)."""
    path = os.environ.get("XRTOP_BENCH_STATS")
    if not path:
        return
    stats = session.thread.stats()
    data = {
        "samples": stats.samples,
        "empty": stats.empty,
        "late": stats.late,
        "errors": dict(stats.errors),
        "elapsed": stats.elapsed,
        "requested_hz": stats.requested_hz,
        "achieved_hz": stats.achieved_hz,
        "stop_times": list(session.thread.stop_times),
    }
    if session.processes is not None:
        data["processes"] = process_bench_stats(session)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _attach_launched(
    launched: Launched, pid: int, sampling: SamplingOptions, duration: float | None
) -> Session | None:
    """Attach to the R that `launched` just started; None when R ended first.

    R is held while xrtop attaches so that its first statements do not run unsampled
    (blocking mode only: --nonblocking promises never to stop the target). R is found as
    soon as the dynamic loader maps libR.so, so a hold can catch the loader midway; a
    failed attach is therefore retried twice, with R running in between.
    """
    for attempt in range(3):
        hold = StartupHold(pid) if sampling.blocking else None
        try:
            return Session.attach_pid(pid, sampling, duration=duration)
        except XrtopError:
            if _gone(pid):
                return None
            if attempt == 2:
                raise
        finally:
            if hold is not None:
                hold.release()
                launched.adopt_status(pid, hold.exit_status)
        time.sleep(0.02)
    return None


def _record_launched(
    args: argparse.Namespace,
    command: list[str],
    sampling: SamplingOptions,
    duration: float | None,
) -> int:
    """`xrtop record -- cmd`: start cmd, record its R from startup to exit, return its code.

    The command keeps xrtop's stdin, stdout and stderr; the profile goes to -o or a new
    file in the current directory. Signals xrtop receives are passed on to the command.
    """
    stop, wakeup = threading.Event(), Wakeup()
    rotation = _rotation(args, wakeup)
    path = args.output
    if rotation is not None and path:
        path = rotation.first_file(path)
    # Open -o before starting anything, so that a bad path starts nothing.
    out = open_output(path, args.format) if path else None
    received: list[int] = []
    with _stop_on_signals(stop, received, wakeup, _on_hangup(rotation)):
        launched = Launched(command)
        session: Session | None = None
        try:
            r_pid = launched.wait_for_r(cancel=stop)
            if r_pid is not None:
                session = _attach_launched(launched, r_pid, sampling, duration)
            if out is None:
                suffix = FORMATS[args.format].suffix
                path = str(default_output_name(launched.process.pid, suffix))
                if rotation is not None:
                    path = rotation.first_file(path)
                out = open_output(path, args.format)
            if session is not None:
                try:
                    ok = _sample_into(args, sampling, session, out, stop, wakeup, rotation)
                except XrtopError:
                    if not _gone(session.target.pid):
                        raise
                    launched.adopt_status(session.target.pid, session.thread.exit_status)
                    session = None
                    out = open_output(path, args.format)
            if session is None:
                _write_empty(out, args.format, sampling, command)
                ok = True
            else:
                launched.adopt_status(session.target.pid, session.thread.exit_status)
        except BaseException:
            # xrtop cannot record it: do not leave the command running on its own.
            launched.terminate()
            raise
        if ok:
            if rotation is not None and rotation.closed:
                path = ", ".join(name for name, _ in rotation.closed)
            print(f"xrtop: profile written to {path}", file=sys.stderr)
        _forward_until_exit(launched, received)
    code = launched.wait()
    return code if ok or code else 1


def _write_empty(
    out: IO[Any], file_format: str, sampling: SamplingOptions, command: list[str]
) -> None:
    """Write and close the profile of a command whose R ended (or never started) before it
    could be sampled: no samples; say so."""
    empty = Profile(
        [],
        sampling.interval_us,
        sampling.options,
        shlex.join(command),
        ProfileInfo(start_ns=time.time_ns(), duration_ns=0),
    )
    write_profile(out, file_format, empty)
    out.close()
    print(
        f"xrtop: {shlex.join(command)} ended before its R could be sampled: "
        "the profile has no samples.",
        file=sys.stderr,
    )


def _forward_until_exit(launched: Launched, received: list[int]) -> None:
    """Wait for the launched command to end on its own, passing on the signals xrtop gets
    meanwhile (`received` grows as they come)."""
    forwarded = 0
    while True:
        while forwarded < len(received):
            launched.send(received[forwarded])
            forwarded += 1
        try:
            launched.process.wait(0.1)
            return
        except subprocess.TimeoutExpired:
            continue


def cmd_dump(args: argparse.Namespace) -> int:
    """`xrtop dump PID`: R's stack right now, innermost first (with --subprocesses, the
    stack of every R process below it too, each after its parent)."""
    pid = parse_pid(args.pid)
    if args.force_version is not None:
        parse_version(args.force_version)
    _check_native(args)
    try:
        target = attach(pid, force_version=args.force_version)
    except XrtopError as err:
        if type(err).__name__ == "NotRProcessError":
            err.hint = r_children_hint(pid)
        raise
    dumps = [_dump_one(target, "target", 0, args)]
    if args.subprocesses:
        names = {pid: tuple(f["name"] for f in dumps[0]["frames"])}
        for child, forked, found in attach_descendants(target):
            role = role_of(found.cmdline, forked, names.get(found.parent_pid, ()))
            with contextlib.suppress(XrtopError):  # ended meanwhile: nothing to show
                dumps.append(_dump_one(child, role, found.parent_pid, args))
                names[child.pid] = tuple(f["name"] for f in dumps[-1]["frames"])
    if args.json:
        json.dump(dumps if args.subprocesses else dumps[0], sys.stdout, indent=2)
        print()
        return 0
    for i, dump in enumerate(dumps):
        _print_dump(dump, target.info.script if i == 0 else "")
    return 0


def _dump_one(target: Target, role: str, parent: int, args: argparse.Namespace) -> dict[str, Any]:
    """One process's stack now, as `xrtop dump --json` prints it (`args`: dump's flags)."""
    target.set_lines(True)  # one sample: where each frame is, when R keeps source references
    if args.native:
        target.set_native(True, evaluator=args.evaluator_frames)
    stack = sample_once(target, blocking=not args.nonblocking)
    frames = [
        {
            "name": name,
            "file": loc[0] if loc else None,
            "line": loc[1] if loc else None,
            "native": is_native(name),
        }
        for name, loc in ((n, stack.site(i)) for i, n in enumerate(stack.names))
    ]
    dump: dict[str, Any] = {
        "pid": target.pid,
        "r_version": target.version_text,
        "idle": stack.idle,
        "gc": stack.gc,
        "frames": frames,
    }
    if parent:
        dump["role"], dump["parent_pid"] = role, parent
    return dump


def _print_dump(dump: dict[str, Any], script: str) -> None:
    """`dump` as text: a line on the process, then its frames innermost first."""
    state = "idle" if dump["idle"] else ("in GC" if dump["gc"] else "running")
    what = script or f"{dump['role']} of PID {dump['parent_pid']}"
    print(f"R {dump['r_version']}, PID {dump['pid']} ({what}), {state}")
    if not dump["frames"]:
        print("  (at top level: no R function is running)")
    for frame in dump["frames"]:
        where = f"  ({frame['file']}:{frame['line']})" if frame["file"] else ""
        print(f"  {frame['name']}{where}")


def cmd_convert(args: argparse.Namespace) -> int:
    """`xrtop convert IN --format F`: turn any Rprof.out into a flame-graph format."""
    path = Path(args.file)
    profile = read_profile(path)
    out = open_output(args.output, args.format) if args.output else standard_output(args.format)
    # Every sample: by function, as R's own tools count it, or as the file records it for a
    # format whose readers choose (pprof keeps its lines and `<GC>`).
    options = profile.options if FORMATS[args.format].as_recorded else RprofOptions(idle=True)
    info = rprof_file_info(path, len(profile.log), profile.interval_us)
    whole = Profile(profile.log, profile.interval_us, options, path.name, info)
    try:
        count = write_profile(out, args.format, whole)
    finally:
        close_output(out)
    if args.output:
        print(f"xrtop: {count} samples written to {args.output}", file=sys.stderr)
    return 0


def cmd_live(args: argparse.Namespace, command: list[str] | None) -> int:
    """`xrtop [PID]` and `xrtop -- cmd`: the live view (or the picker with no PID)."""
    from xrtop.live import run_live  # Textual loads only for the live view

    pid_text = args.pid or args.pid_flag
    sampling = replace(_sampling(args), keep_evaluator_frames=True)  # V shows them
    if pid_text and command is not None:
        raise UsageError("give either a PID or a command after --, not both")
    return run_live(
        pid=parse_pid(pid_text) if pid_text else None,
        command=command,
        sampling=sampling,
        output=args.output,
    )


def cmd_view(args: argparse.Namespace) -> int:
    """`xrtop view FILE`: browse a recorded profile, read inside the app (with progress)."""
    path = Path(args.file)
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
    except OSError as err:
        raise unreadable(path, err) from None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # No live view here: a bad file is the likelier mistake, so name it first.
        read_profile(path)
    elif sys.stderr.isatty():  # at once: Textual takes a moment to start
        print(f"xrtop: opening {path.name} ({size / 1e6:.1f} MB)…", file=sys.stderr)
    from xrtop.live import run_view  # Textual loads only for the live view

    return run_view(path)


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split `xrtop [options] -- cmd args` into xrtop's own arguments and the command."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, None


def run(argv: list[str]) -> int:
    """Run one command line; raise XrtopError for user mistakes."""
    own, command = split_command(argv)
    parsers = build_parsers()
    name = own[0] if own and own[0] and own[0] in parsers else ""
    args = parsers[name].parse_args(own[1:] if name else own)
    if name == "record":
        return cmd_record(args, command)
    if not name:
        return cmd_live(args, command)
    if command is not None:
        raise UsageError(f"'xrtop {name}' takes no command after --")
    return SUBCOMMANDS[name](args)


#: The commands that launch nothing, by name: a new one is its parser in `build_parsers`
#: and its entry here.
SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "dump": cmd_dump,
    "view": cmd_view,
    "convert": cmd_convert,
    "diff": cmd_diff,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, and turn errors into a message and an exit code."""
    # Before any thread starts: lets the sampler sleep until R stops instead of polling.
    queue_child_signals()
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except XrtopError as err:
        print(f"xrtop: {err.message}", file=sys.stderr)
        if err.hint:
            print(err.hint, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug: say so plainly, with enough to report it
        print(f"xrtop: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        print("Please report this at the xrtop issue tracker.", file=sys.stderr)
        if "XRTOP_DEBUG" in os.environ:
            raise
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
