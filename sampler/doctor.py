"""The permission doctor: why the kernel refused to let xrtop read a process, and the fix.

It never runs sudo and never suggests giving capabilities to the Python interpreter (that
would give every Python program on the machine ptrace rights).
"""

from __future__ import annotations

import os
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


def diagnose(pid: int) -> list[str]:
    """Reasons, with fixes, why xrtop may not trace `pid`; most likely first."""
    reasons: list[str] = []
    me = os.geteuid()
    uid_field = _status_field(pid, "Uid")
    owner = int(uid_field.split()[1]) if uid_field else None
    privileged = has_ptrace_capability()
    scope = yama_scope()
    if scope == 3:
        reasons.append(
            "The kernel forbids all tracing: /proc/sys/kernel/yama/ptrace_scope is 3 "
            f"({_YAMA_MEANING[3]}). Only a reboot with a lower setting allows profiling."
        )
    if owner is not None and owner != me and not privileged:
        reasons.append(
            f"Process {pid} belongs to another user (uid {owner}; you are uid {me}). Run xrtop "
            f"as that user, or as root: sudo xrtop {pid}"
        )
    if scope in (1, 2) and not privileged:
        reasons.append(
            f"The kernel's Yama ptrace_scope is {scope} ({_YAMA_MEANING[scope]}). Run xrtop as "
            "root (sudo), or allow tracing of your own processes with: "
            "sudo sysctl kernel.yama.ptrace_scope=0"
        )
    if in_container() and not privileged:
        reasons.append(
            "xrtop runs in a container without CAP_SYS_PTRACE. Start the container with "
            "--cap-add SYS_PTRACE (and --pid=host to see processes outside it)."
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
