"""The permission doctor: why the kernel refused to let xrtop read a process, and the fix.

`diagnose(pid)` looks at what decides ptrace access on Linux, most specific first: a tracer
already attached, Yama's ptrace_scope, the target's owner, a target that made itself
non-dumpable, a container without CAP_SYS_PTRACE, and a target whose files xrtop cannot
see (another user namespace, e.g. a rootless container). Each reason says what is wrong
and what to run instead; inside a container, also the flags to start the container with
(--user, --cap-add SYS_PTRACE, --pid=host), as sudo may not exist there.

It never runs sudo and never suggests giving capabilities to the Python interpreter (that
would give every Python program on the machine ptrace rights).
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

from sampler.errors import PermissionDeniedError

CAP_SYS_PTRACE = 19
_YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")
_YAMA_MEANING = {
    0: "classic: any process of the same user may be traced",
    1: "restricted: only a parent may trace its children (or a process that allowed it)",
    2: "admin-only: only processes with CAP_SYS_PTRACE may trace",
    3: "no attach: nobody may trace, not even root, until reboot",
}


def _status_field(pid: int | str, name: str) -> str | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{name}:\s*(.*)$", text, re.M)
    return m[1] if m else None


def _user(uid: int) -> str:
    """A user's name and uid, e.g. "alice (uid 1000)"."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"


def has_ptrace_capability() -> bool:
    """Whether xrtop itself holds CAP_SYS_PTRACE (root usually does, outside containers)."""
    caps = _status_field("self", "CapEff")
    return bool(caps) and bool(int(caps or "0", 16) & (1 << CAP_SYS_PTRACE))


def yama_scope() -> int | None:
    """The kernel's Yama ptrace_scope, or None when Yama is not enabled."""
    try:
        return int(_YAMA.read_text().strip())
    except (OSError, ValueError):
        return None


def in_container() -> bool:
    """A best guess whether xrtop itself runs inside a container."""
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        return "container=" in Path("/proc/1/environ").read_text(errors="replace")
    except OSError:
        return False


def missing_process_hint() -> str:
    """What to do about a PID that names no process xrtop can see."""
    if in_container():
        return (
            "xrtop runs in a container: it sees the host's processes (by the host's PIDs) "
            "only when the container is started with --pid=host."
        )
    return "Check the PID with ps, or run xrtop alone to pick one."


def tracer_of(pid: int) -> int:
    """The PID tracing `pid` (0: none or unknown)."""
    field = _status_field(pid, "TracerPid")
    try:
        return int(field or 0)
    except ValueError:
        return 0


def _non_dumpable(pid: int, owner: int | None, me: int) -> bool:
    """Whether `pid` is ours yet the kernel hides it like another user's process.

    A process that is not dumpable (a setuid program, or one that called
    prctl(PR_SET_DUMPABLE, 0)) has the files in its /proc directory owned by root.
    """
    if owner is None or owner != me or me == 0:
        return False
    try:
        return os.stat(f"/proc/{pid}/maps").st_uid == 0
    except OSError:
        return False


def _root_unreadable(pid: int) -> bool:
    """Whether xrtop cannot see the target's files through /proc/PID/root."""
    try:
        os.listdir(f"/proc/{pid}/root/")
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def _other_user_namespace(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
    except OSError:
        return False


def diagnose(pid: int) -> list[str]:
    """Reasons, with fixes, why xrtop may not trace `pid`; most likely first."""
    reasons: list[str] = []
    me = os.geteuid()
    uid_field = _status_field(pid, "Uid")
    owner = int(uid_field.split()[1]) if uid_field else None
    privileged = has_ptrace_capability()
    scope = yama_scope()
    tracer = tracer_of(pid)
    if tracer and tracer != os.getpid():
        reasons.append(
            f"Process {pid} is already traced by {_process_name(tracer)} (PID {tracer}), a "
            "debugger, strace or another profiler; a process can have only one tracer. "
            f"Stop that tool, or read without stopping R: xrtop --nonblocking {pid}"
        )
    if scope == 3:
        reasons.append(
            "The kernel forbids all tracing: /proc/sys/kernel/yama/ptrace_scope is 3 "
            f"({_YAMA_MEANING[3]}). Only a reboot with a lower setting allows profiling."
        )
    contained = in_container()
    if owner is not None and owner != me and not privileged:
        in_a_container = (
            f"; in a container, start it as that user (--user {owner}) or with --cap-add SYS_PTRACE"
            if contained
            else ""
        )
        reasons.append(
            f"Process {pid} belongs to another user, {_user(owner)}; you are {_user(me)}. "
            f"Run xrtop as that user, or as root: sudo xrtop {pid}{in_a_container}"
        )
    if scope == 1 and not privileged:
        reasons.append(
            f"The kernel's Yama ptrace_scope is 1 ({_YAMA_MEANING[1]}). Let xrtop start R "
            "itself (xrtop -- Rscript script.R), run it as root (sudo xrtop "
            f"{pid}), or allow tracing your own processes until reboot: "
            "sudo sysctl kernel.yama.ptrace_scope=0"
        )
    if scope == 2 and not privileged:
        reasons.append(
            f"The kernel's Yama ptrace_scope is 2 ({_YAMA_MEANING[2]}). Run xrtop as root: "
            f"sudo xrtop {pid}"
        )
    if _non_dumpable(pid, owner, me) and not privileged:
        reasons.append(
            f"Process {pid} made itself non-dumpable (a setuid or setgid program, or "
            "prctl(PR_SET_DUMPABLE, 0)), so only root may read it: sudo xrtop " + str(pid)
        )
    # Without the capability, a container may trace only its own user's processes that have
    # no capability it lacks: not root's processes on the host, nor other users'.
    if contained and not privileged and (me == 0 or (owner is not None and owner != me)):
        reasons.append(
            "xrtop runs in a container without CAP_SYS_PTRACE, which it needs to trace "
            "another user's process or one with more capabilities than the container (a "
            "root process on the host). Start the container with --pid=host --cap-add "
            "SYS_PTRACE, or --pid=host --privileged (Kubernetes: hostPID: true and "
            'securityContext.capabilities.add: ["SYS_PTRACE"]).'
        )
    if _root_unreadable(pid) and (_other_user_namespace(pid) or not reasons):
        reasons.append(
            f"xrtop cannot see the files of process {pid} (/proc/{pid}/root is unreadable): "
            "it runs in another user namespace, as in a rootless container. Run xrtop "
            "inside that container, or join its user namespace as its owner: "
            f"nsenter --target {pid} --user --preserve-credentials xrtop {pid}"
        )
    if not reasons:
        reasons.append(
            "The kernel refused access (a security module such as AppArmor or SELinux, or "
            "a process that made itself non-dumpable). Try running xrtop as root: "
            f"sudo xrtop {pid}"
        )
    return reasons


def permission_error(pid: int, what: str) -> PermissionDeniedError:
    """A PermissionDeniedError for `pid` whose hint is the doctor's diagnosis."""
    return PermissionDeniedError(
        f"permission denied: xrtop {what} process {pid}",
        "\n".join(f"- {reason}" for reason in diagnose(pid)),
    )
