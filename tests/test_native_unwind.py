"""The native unwinder on real R, against gdb's backtrace of the same stopped process.

R is stopped where its stack holds still: in a C function of ours that blocks in pause()
(called through .C and .Call), or anywhere in R's internals, BLAS and data.table (stopped
with SIGSTOP). xrtop takes its copy of the registers and the stack the way the sampler does
(Tracer, one read from sp), detaches, unwinds; then gdb attaches to the same, still
stopped, process. Both must find the same frames (every pc, down to main) and, where gdb
names a function, the same name or an alias of it. Libraries are stripped in Debian, so
many of libR's frames are unnamed to both: xrtop writes those as libR.so+offset, which
must be the address in the file where the function that holds the pc starts (its FDE's).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import RLAB_ROOT
from conftest import REnv
from conftest import RLauncher
from conftest import RRun
from conftest import wait_for
from elftools.elf.elffile import ELFFile

from sampler.native import NativeStack
from sampler.native import NativeUnwinder
from sampler.native.cfi import find_fde
from sampler.native.debugfiles import build_id
from sampler.native.modules import read_cfi
from sampler.native.symtab import read_symbols
from sampler.procmem import LiveMemory
from sampler.ptrace import Tracer
from sampler.symbols import open_mapped_file
from sampler.symbols import read_maps

#: x86-64's system call number of pause().
_PAUSE = "34"
#: How much stack the tests copy (the sampler copies less; enough here for any R stack).
_STACK_COPY = 1 << 20
_GDB_SCRIPT = """
import gdb
for thread in gdb.selected_inferior().threads():
    if thread.ptid[1] == thread.inferior.pid:
        thread.switch()
frame = gdb.newest_frame()
while frame is not None:
    # Inlined calls and tail calls are frames gdb makes up from debug information (libc6-dbg
    # on the host): the machine stack has none.
    if frame.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):
        print("XRFRAME %x %s" % (frame.pc(), frame.name()))
    frame = frame.older()
"""


def _need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


#: How the blocker library is built: with CFI (as every Debian library), or with none at all
#: but frame pointers (the unwinder's fallback).
_BUILDS = {
    "cfi": ["-O2", "-fno-optimize-sibling-calls"],
    "fp": [
        *("-O1", "-fno-omit-frame-pointer", "-fno-optimize-sibling-calls"),
        *("-fno-asynchronous-unwind-tables", "-fno-unwind-tables"),
    ],
}


@pytest.fixture(scope="session")
def blockers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tests/r/native_block.c built on the host (no R headers: it loads into every R),
    each way of _BUILDS."""
    cc = _need_tool("cc")
    built = {}
    for name, flags in _BUILDS.items():
        target = tmp_path_factory.mktemp("native") / f"native_block_{name}.so"
        source = str(R_SCRIPTS / "native_block.c")
        subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", str(target), source], check=True)
        built[name] = target
    return built


@pytest.fixture
def blocker(blockers: dict[str, Path]) -> Path:
    """The blocker library with CFI."""
    return blockers["cfi"]


def _root(env: REnv) -> Path:
    return Path("/") if env.suite == "host" else RLAB_ROOT / env.suite


@contextlib.contextmanager
def _placed(library: Path, env: REnv) -> Iterator[str]:
    """`library` where `env`'s R can load it; yields its path as R sees it."""
    if env.suite == "host":
        yield str(library)
        return
    inner = f"/tmp/xrtop-native-{uuid.uuid4().hex[:8]}.so"
    copy = _root(env) / inner.lstrip("/")
    shutil.copy(library, copy)
    try:
        yield inner
    finally:
        copy.unlink()


@pytest.fixture
def placed(blocker: Path, r_env: REnv) -> Iterator[tuple[REnv, str]]:
    """The blocker library where `r_env`'s R can load it: (env, its path as R sees it)."""
    with _placed(blocker, r_env) as inner:
        yield r_env, inner


def _in_pause(pid: int) -> bool:
    with open(f"/proc/{pid}/syscall") as f:
        return f.read().split()[0] == _PAUSE


def capture(pid: int) -> tuple[bytes, bytes, int]:
    """Registers, stack copy and its address, taken as the sampler takes them; detached."""
    tracer = Tracer(pid)
    try:
        tracer.stop()
        assert tracer.save_registers()
        regs = tracer.registers()
        start = tracer.stack_pointer() - 128
        stack = LiveMemory(pid).read_upto(start, _STACK_COPY)
        tracer.resume()
    finally:
        tracer.detach()
    return regs, stack, start


def gdb_frames(pid: int, tmp: Path) -> list[tuple[int, str | None]]:
    """gdb's frames of the main thread, innermost first, down to main: (pc, name)."""
    script = tmp / "frames.py"
    script.write_text(_GDB_SCRIPT)
    command = [_need_tool("gdb"), "-nx", "-batch"]
    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        # A chroot in our mount namespace: gdb would read our own files of the same paths.
        # (In a mount namespace of its own, gdb enters it to read the target's files.)
        command += ["-iex", f"set sysroot /proc/{pid}/root", f"/proc/{pid}/exe"]
    out = subprocess.run(
        [*command, "-p", str(pid), "-x", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    frames: list[tuple[int, str | None]] = []
    for line in out.stdout.splitlines():
        if line.startswith("XRFRAME "):
            _, pc, name = line.split(" ", 2)
            frames.append((int(pc, 16), None if name == "None" else name))
            if name == "main":
                break
    assert frames, f"gdb printed no frames: {out.stderr[-2000:]}"
    return frames


def assert_same_as_gdb(
    stack: NativeStack, gdb: list[tuple[int, str | None]], unwinder: NativeUnwinder
) -> None:
    """Every pc as gdb's; gdb's names (or aliases) where gdb names; file offsets else."""
    ours = [f"{f.pc:#x} {f.label()}" for f in stack.frames]
    theirs = [f"{pc:#x} {name}" for pc, name in gdb]
    assert stack.complete, f"{stack.reason}\nxrtop: {ours}\ngdb: {theirs}"
    assert [f.pc for f in stack.frames] == [pc for pc, _ in gdb], f"\n{ours}\n{theirs}"
    for index, (frame, (_, name)) in enumerate(zip(stack.frames, gdb)):
        address = frame.pc if index == 0 else frame.pc - 1
        module = unwinder.modules.find(address)
        assert module is not None and module.path == frame.module
        if frame.symbol is None:
            # The start of the function that holds the pc, where its CFI says (else the pc).
            fde = module.fde_at(address - module.bias)
            assert fde is None or fde.start <= address - module.bias < fde.end
            start = fde.start if fde is not None else frame.pc - module.bias
            assert frame.label() == f"{module.name}+{start:#x}"
            assert name is None, f"gdb names {name} at {frame.pc:#x}, xrtop: {frame.label()}"
        elif name is not None and name != frame.symbol:
            alias = module.symbols.address_of(name)
            assert alias is not None, f"gdb's {name} is not in {module.name}'s symbols"
            assert alias == module.symbols.address_of(frame.symbol), (name, frame.symbol)


def _names(stack: NativeStack) -> list[str]:
    return [frame.label() for frame in stack.frames]


@pytest.mark.parametrize(
    ("how", "build"), [("C", "cfi"), ("Call", "cfi"), ("signal", "cfi"), ("C", "fp")]
)
def test_blocked_in_c_code_matches_gdb(
    r_launcher: RLauncher,
    blockers: dict[str, Path],
    r_env: REnv,
    how: str,
    build: str,
    tmp_path: Path,
) -> None:
    """R -> .C / .Call -> our C code, blocked in pause(); with CFI, and without any (there
    the unwinder follows the frame pointers); in a signal handler (through the kernel's
    signal frame, whose CFI is a set of expressions)."""
    with open(blockers[build], "rb") as stream:
        elf = ELFFile(stream)
        leaf = read_symbols(elf).address_of("xr_leaf")
        assert leaf is not None
        assert (find_fde(read_cfi(elf), leaf) is not None) == (build == "cfi")
    with _placed(blockers[build], r_env) as library:
        run = r_launcher.start("native_block.R", library, how, env=r_env)
        _check_blocked(run, how, tmp_path)


def _check_blocked(run: RRun, how: str, tmp_path: Path) -> None:
    wait_for(lambda: _in_pause(run.pid), 30, "R to block in pause()")
    unwinder = NativeUnwinder(run.pid)
    try:
        stack = unwinder.unwind(*capture(run.pid))
        assert run.tracer() == 0 and run.state() in "SR"
        names = _names(stack)
        at = names.index("xr_leaf")
        if how == "signal":
            # The handler returns to the signal trampoline (named where .dynsym has it).
            assert names[at + 1] == "xr_handler", names
            trampoline = stack.frames[at + 2]
            assert os.path.basename(trampoline.module).startswith("libc"), names
            assert trampoline.symbol in (None, "__restore_rt"), names
            assert "xr_signal" in names[at + 3 :], names
        else:
            entry = "xr_block" if how == "C" else "xr_call"
            assert names[at : at + 3] == ["xr_leaf", "xr_middle", entry], names
        assert "Rf_eval" in names[at:] and names[-1] == "main", names
        assert stack.reason == "outermost frame (main)"
        assert_same_as_gdb(stack, gdb_frames(run.pid, tmp_path), unwinder)
    finally:
        unwinder.close()


def test_short_stack_copy_stops_with_a_reason(
    r_launcher: RLauncher, blocker: Path, tmp_path: Path
) -> None:
    run = r_launcher.start("native_block.R", str(blocker), "C")
    wait_for(lambda: _in_pause(run.pid), 30, "R to block in pause()")
    unwinder = NativeUnwinder(run.pid)
    try:
        regs, stack, start = capture(run.pid)
        whole = unwinder.unwind(regs, stack, start)
        short = unwinder.unwind(regs, stack[:512], start)
    finally:
        unwinder.close()
    assert whole.complete
    assert not short.complete and short.reason.startswith("stack copy ends at 0x"), short
    assert 1 <= len(short.frames) < len(whole.frames)
    # The same frames as far as the copy goes, the last one's CFA included.
    assert short.frames == whole.frames[: len(short.frames)]


def test_library_loaded_after_the_unwinder_started(
    r_launcher: RLauncher, placed: tuple[REnv, str]
) -> None:
    env, library = placed
    token = uuid.uuid4().hex[:8]
    go, done = f"/tmp/xrtop-go-{token}", f"/tmp/xrtop-done-{token}"
    root = _root(env)
    run = r_launcher.start("native_block.R", library, "C", go, done, env=env)
    unwinder = NativeUnwinder(run.pid)
    try:
        assert not any(
            m.name == os.path.basename(library) for m in unwinder.modules.modules.values()
        )
        (root / go.lstrip("/")).write_text("go")
        wait_for(lambda: (root / done.lstrip("/")).exists(), 30, "R to load the library")
        wait_for(lambda: _in_pause(run.pid), 30, "R to block in pause()")
        stack = unwinder.unwind(*capture(run.pid))
    finally:
        unwinder.close()
        for name in (go, done):
            (root / name.lstrip("/")).unlink(missing_ok=True)
    assert stack.complete, stack.reason
    names = _names(stack)
    at = names.index("xr_leaf")
    assert names[at : at + 3] == ["xr_leaf", "xr_middle", "xr_block"], names


def _stopped(run: RRun) -> bool:
    return run.state() == "T"


@pytest.mark.parametrize("workload", ["sort", "grepl", "crossprod", "forder", "fread"])
def test_busy_compiled_code_matches_gdb(
    r_launcher: RLauncher, r_env: REnv, workload: str, tmp_path: Path
) -> None:
    """R stopped (SIGSTOP) wherever it is in R's internals, BLAS or data.table."""
    run = r_launcher.start("native_busy.R", workload, env=r_env)
    unwinder = NativeUnwinder(run.pid)
    try:
        os.kill(run.pid, signal.SIGSTOP)
        wait_for(lambda: _stopped(run), 30, "R to stop")
        stack = unwinder.unwind(*capture(run.pid))
        # A stopped R stays stopped (its state passes through the tracer's stop first).
        wait_for(lambda: _stopped(run), 5, "R to be back in its stop after the capture")
        assert_same_as_gdb(stack, gdb_frames(run.pid, tmp_path), unwinder)
        wait_for(lambda: _stopped(run), 5, "R to be back in its stop after gdb")
        # The same stack again: caching changes nothing.
        again = unwinder.unwind(*capture(run.pid))
        assert again == stack
    finally:
        unwinder.close()
        os.kill(run.pid, signal.SIGCONT)


def test_vdso_and_debug_files(r_launcher: RLauncher, r_env: REnv) -> None:
    """The vDSO (clock_gettime) is read from R's memory; a debug file, where the target's
    root has one (the host's libc6-dbg), names static functions .dynsym lacks."""
    run = r_launcher.start("busy.R", env=r_env)
    unwinder = NativeUnwinder(run.pid)
    try:
        modules = {module.name: module for module in unwinder.modules.modules.values()}
        vdso = modules["[vdso]"]
        start = vdso.symbols.address_of("__vdso_clock_gettime")
        assert start is not None and vdso.symbols.address_of("clock_gettime") == start
        fde = vdso.fde_at(start)
        assert fde is not None and fde.start == start  # an FDE starts where its function does
        rule = fde.rule_at(start)
        # At any function's entry: CFA = rsp + 8, the return address just below it.
        assert rule is not None and (rule.cfa_register, rule.cfa_offset) == (7, 8)
        assert rule.rule_for(16) == (0, -8)
        libc = next(m for name, m in modules.items() if name.startswith(("libc.so", "libc-")))
        mapping = next(m for m in read_maps(run.pid) if m.path == libc.path and not m.offset)
        with open_mapped_file(run.pid, mapping)[0] as stream:
            wanted = build_id(ELFFile(stream))
        assert wanted is not None
        debug = _root(r_env) / f"usr/lib/debug/.build-id/{wanted[:2]}/{wanted[2:]}.debug"
        # _int_malloc is static: only a debug file's .symtab names it.
        assert (libc.symbols.address_of("_int_malloc") is not None) == debug.exists()
        assert libc.has_debug_file == debug.exists()
    finally:
        unwinder.close()


def test_corrupt_stack_copies_end_with_a_reason(r_launcher: RLauncher, blocker: Path) -> None:
    """Whatever the copy holds (a torn or overwritten stack), unwinding returns a stack with
    a reason and never raises or runs away."""
    run = r_launcher.start("native_block.R", str(blocker), "C")
    wait_for(lambda: _in_pause(run.pid), 30, "R to block in pause()")
    unwinder = NativeUnwinder(run.pid, max_frames=64)
    rng = random.Random(21)
    try:
        regs, stack, start = capture(run.pid)
        whole = unwinder.unwind(regs, stack, start)
        used = whole.frames[-1].cfa - start
        endings = set()
        for _ in range(300):
            corrupt = bytearray(stack)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(0, used - 8) & ~7
                value = rng.choice([0, at + start, rng.getrandbits(64), whole.frames[0].pc])
                corrupt[at : at + 8] = value.to_bytes(8, "little")
            stack_ = unwinder.unwind(regs, bytes(corrupt), start)
            assert stack_.frames and stack_.reason
            assert len(stack_.frames) <= 64
            cfas = [f.cfa for f in stack_.frames if f.cfa]
            assert cfas == sorted(set(cfas)), "CFAs grow strictly outwards"
            endings.add(stack_.reason.split(" ")[0])
    finally:
        unwinder.close()
    assert len(endings) > 1, endings  # the corruption did change how stacks end
