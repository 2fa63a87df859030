"""The `xrtop` command line: the live view, `record`, `dump`, `view` and `convert`.

Every user mistake becomes one clear message on standard error and a documented exit code
(see sampler.errors); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from typing import NoReturn

from sampler.errors import EXIT_INTERNAL
from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.export import FORMATS
from sampler.export import write_collapsed
from sampler.export import write_speedscope
from sampler.model import Stack
from sampler.ptrace import Tracer
from sampler.rprof import RprofOptions
from sampler.rprof import read_rprof
from sampler.rprof import write_rprof
from sampler.rstack import RawSample
from sampler.target import attach
from sampler.target import parse_pid
from sampler.target import verify_layout
from xrtop import __version__
from xrtop.session import Launched
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.session import StreamedFile
from xrtop.session import check_duration
from xrtop.session import default_output_name
from xrtop.session import open_output
from xrtop.session import r_children_hint

COMMANDS = ("record", "dump", "view", "convert")


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
        "--force-version",
        metavar="X.Y",
        help="read the target as R X.Y when its version cannot be detected",
    )


def _file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gc", action="store_true", help='mark samples taken in GC "<GC>"')
    parser.add_argument("--idle", action="store_true", help="keep samples where R waits")


def build_parsers() -> dict[str, argparse.ArgumentParser]:
    """One parser per command; "" is the live view."""
    live = _Parser(
        prog="xrtop",
        description="Live, top-style sampling profiler for R. Run alone to pick an R process.",
        epilog="Commands: xrtop record | dump | view | convert  (each has --help).",
    )
    live.add_argument("pid", nargs="?", help="the R process to watch")
    live.add_argument("-p", "--pid", dest="pid_flag", metavar="PID", help="same as PID")
    _sampling_flags(live)
    _file_flags(live)
    live.add_argument("-o", "--output", metavar="FILE", help="also stream samples to FILE")
    live.add_argument("--version", action="version", version=f"xrtop {__version__}")

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
    record.add_argument(
        "--format",
        choices=FORMATS,
        default="rprof",
        help="rprof (R's Rprof.out, default), collapsed or speedscope",
    )
    _file_flags(record)

    dump = _Parser(prog="xrtop dump", description="Print where R is right now.")
    dump.add_argument("pid", help="the R process")
    dump.add_argument("--json", action="store_true", help="machine-readable output")
    dump.add_argument("--nonblocking", action="store_true", help="do not stop the target")
    dump.add_argument("--force-version", metavar="X.Y")

    view = _Parser(prog="xrtop view", description="Open an Rprof.out file in the live view.")
    view.add_argument("file", help="an Rprof.out file (xrtop's or R's own)")

    convert = _Parser(prog="xrtop convert", description="Convert an Rprof.out file.")
    convert.add_argument("file", help="an Rprof.out file (xrtop's or R's own)")
    convert.add_argument("--format", choices=FORMATS[1:], required=True)
    convert.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    convert.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    return {"": live, "record": record, "dump": dump, "view": view, "convert": convert}


def _sampling(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(
        rate_hz=args.rate,
        blocking=not args.nonblocking,
        force_version=args.force_version,
        options=RprofOptions(gc=getattr(args, "gc", False), idle=getattr(args, "idle", False)),
    )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `stop` so that the output is finished cleanly."""

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _write_format(
    out: IO[str], fmt: str, stacks: list[Stack], interval_us: int, name: str, idle: bool
) -> int:
    if fmt == "collapsed":
        return write_collapsed(out, stacks, idle=idle)
    return write_speedscope(out, stacks, interval_us, name=name, idle=idle)


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
    pid = parse_pid(args.pid) if args.pid else None
    path = args.output
    if command is not None and path is None:
        path = str(default_output_name(pid or 0))
    out: IO[str] = open_output(path) if path else sys.stdout
    launched = Launched(command) if command is not None else None
    stop = threading.Event()
    stream: StreamedFile | None = None
    session: Session | None = None
    try:
        with _stop_on_signals(stop):
            if launched is not None:
                pid = launched.wait_for_r()
            assert pid is not None
            session = Session.attach_pid(pid, sampling, duration=duration)
            if args.format == "rprof":
                # The header goes out only once attaching worked: no file for a wrong PID.
                stream = StreamedFile(out, sampling.interval_us, sampling.options)
                session.set_stream(stream)
            session.start()
            if args.verbose:
                target = session.target
                print(
                    f"xrtop: sampling R {target.version_text} in PID {pid} at "
                    f"{sampling.rate_hz:g} Hz ({target.binary.opened_as})",
                    file=sys.stderr,
                )
            while not stop.is_set() and not session.ended.wait(0.1):
                pass
            session.stop()
            if stream is None:
                stacks = list(session.log.iter_stacks())
                _write_format(
                    out,
                    args.format,
                    stacks,
                    sampling.interval_us,
                    f"xrtop PID {pid}",
                    sampling.options.idle,
                )
                if out is not sys.stdout:
                    out.close()
            print(session.summary(), file=sys.stderr)
            if stream is not None and stream.error:
                return 1
    except BaseException:
        if session is not None:
            session.stop()
        elif stream is not None:
            stream.close()
        if launched is not None and launched.process.poll() is None and stop.is_set():
            launched.terminate()
        raise
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(OSError):
                out.close()
    if launched is not None:
        if stop.is_set():
            launched.terminate()
        code = launched.wait()
        if path:
            print(f"xrtop: profile written to {path}", file=sys.stderr)
        return code
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    """`xrtop dump PID`: R's stack right now, innermost first."""
    pid = parse_pid(args.pid)
    try:
        target = attach(pid, force_version=args.force_version)
    except XrtopError as err:
        if type(err).__name__ == "NotRProcessError":
            err.hint = r_children_hint(pid)
        raise
    reader = target.reader
    result: dict[str, object] = {}
    done = threading.Event()

    # ptrace requires the same thread for every call, and it must not be the main thread's
    # signal handling that interrupts it: one short-lived thread does the whole stop.
    def one_sample() -> None:
        try:
            if args.nonblocking:
                verify_layout(target)
                raw = reader.capture()
            else:
                tracer = Tracer(pid)
                try:

                    def stopped() -> RawSample:
                        tracer.stop()
                        try:
                            return reader.capture()
                        finally:
                            tracer.resume()

                    verify_layout(target, stopped, attempts=10)
                    tracer.stop()
                    try:
                        raw = reader.capture()
                        raw.idle = bool(tracer.blocked_in_syscall())
                    finally:
                        tracer.resume()
                finally:
                    tracer.detach()
            result["stack"] = reader.finish(raw)
        except Exception as err:
            result["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=one_sample, daemon=True)
    worker.start()
    done.wait(10)
    error = result.get("error")
    if isinstance(error, XrtopError):
        raise error
    if error is not None:
        raise XrtopError(
            f"could not read the stack of process {pid}: {error}",
            "The target may have exited; try again.",
        )
    stack = result["stack"]
    assert isinstance(stack, Stack)
    frames = [
        {"name": name, "file": loc[0] if loc else None, "line": loc[1] if loc else None}
        for name, loc in ((n, stack.site(i)) for i, n in enumerate(stack.names))
    ]
    if args.json:
        json.dump(
            {
                "pid": pid,
                "r_version": target.version_text,
                "idle": stack.idle,
                "gc": stack.gc,
                "frames": frames,
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    state = "idle" if stack.idle else ("in GC" if stack.gc else "running")
    print(f"R {target.version_text}, PID {pid} ({target.info.script}), {state}")
    if not frames:
        print("  (at top level: no R function is running)")
    for frame in frames:
        where = f"  ({frame['file']}:{frame['line']})" if frame["file"] else ""
        print(f"  {frame['name']}{where}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """`xrtop convert IN --format F`: turn any Rprof.out into a flame-graph format."""
    path = Path(args.file)
    try:
        profile = read_rprof(path)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    out: IO[str] = open_output(args.output) if args.output else sys.stdout
    try:
        count = _write_format(
            out, args.format, profile.stacks, profile.interval_us, path.name, True
        )
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"xrtop: {count} samples written to {args.output}", file=sys.stderr)
    return 0


def save_rprof(session: Session, path: Path, start: int = 0) -> tuple[int, int]:
    """Write the session's samples from index `start` to `path` as Rprof.out."""
    return write_rprof(path, session.log, session.sampling.options, start)


def cmd_live(args: argparse.Namespace, command: list[str] | None) -> int:
    """`xrtop [PID]` and `xrtop -- cmd`: the live view (or the picker with no PID)."""
    from xrtop.app import run_live  # Textual loads only for the live view

    pid_text = args.pid or args.pid_flag
    sampling = _sampling(args)
    if pid_text and command is not None:
        raise UsageError("give either a PID or a command after --, not both")
    return run_live(
        pid=parse_pid(pid_text) if pid_text else None,
        command=command,
        sampling=sampling,
        output=args.output,
    )


def cmd_view(args: argparse.Namespace) -> int:
    """`xrtop view FILE`: browse a recorded profile."""
    path = Path(args.file)
    try:
        profile = read_rprof(path)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    # Textual loads only once the file is known to be good: a bad file gets its one-line
    # answer even where the live view cannot start.
    from xrtop.app import run_view

    return run_view(path, profile)


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
    name = own[0] if own and own[0] in COMMANDS else ""
    args = parsers[name].parse_args(own[1:] if name else own)
    if name == "record":
        return cmd_record(args, command)
    if command is not None and name:
        raise UsageError(f"'xrtop {name}' takes no command after --")
    if name == "dump":
        return cmd_dump(args)
    if name == "convert":
        return cmd_convert(args)
    if name == "view":
        return cmd_view(args)
    return cmd_live(args, command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, and turn errors into a message and an exit code."""
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
