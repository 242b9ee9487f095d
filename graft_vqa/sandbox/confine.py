"""Layer 2 of the sandbox: OS confinement of a forked child.

A child confines itself as soon as it is forked, before any program exists (``confine_self``):

1. when the zygote runs as root: no supplementary groups, then the unprivileged ``SANDBOX_UID``
   and ``SANDBOX_GID`` (which clears every capability), so root's files and processes are out of
   reach, ``/proc/<pid>/environ`` and ``mem`` of other processes included;
2. killed with its parent; not dumpable (its own ``/proc`` entries are root's, no ptrace);
3. Landlock (``landlock.Landlock``): no file at all, no TCP, no signal outside its domain;
4. seccomp (``seccomp.Seccomp``): the system calls of ``DENIED_SYSCALLS`` answer EPERM.

Once it has its program, before compiling it, it lowers its rlimits (``apply_limits``): address
space, CPU seconds (the kernel's SIGKILL backstop of ``cpu_s``), no file writes, few file
descriptors, no core dumps. Lowering a limit needs no privilege, so it works under every layer.

The zygote probes the layers once in a throw-away child (``probe``) and the host logs one
warning per layer the system does not allow. A layer that the probe found working but that fails
in a later child ends that child (exit code ``CONFINEMENT_FAILED``): programs never run less
confined than reported.

This module imports only the standard library: the zygote loads it.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
from dataclasses import dataclass, field

from .landlock import Landlock
from .seccomp import DENIED_SYSCALLS, Seccomp

__all__ = ["CONFINEMENT_FAILED", "DENIED_SYSCALLS", "Confinement", "Landlock", "Limits",
           "SANDBOX_GID", "SANDBOX_UID", "Seccomp", "apply_limits", "confine_self", "probe"]

SANDBOX_UID = 65534
"""The user a child switches to when the zygote runs as root (``nobody`` on most systems)."""

SANDBOX_GID = 65534
"""The group a child switches to when the zygote runs as root (``nogroup``/``nobody``)."""

CONFINEMENT_FAILED = 5
"""Exit code of a child that could not apply a layer the probe had found working."""

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


@dataclass
class Limits:
    """OS limits for one sandboxed program."""

    memory_mb: int = 512  # address space the program may add on top of the child's start size
    cpu_s: int = 31  # RLIMIT_CPU: CPU seconds after which the kernel kills the child (SIGKILL)
    max_open_files: int = 32  # RLIMIT_NOFILE
    max_file_bytes: int = 0  # RLIMIT_FSIZE: a program may not write files
    base_bytes: int = 0  # the child's address space at fork (0: read it from /proc/self/statm)


@dataclass
class Confinement:
    """The layers prepared once in the zygote, and which of them the probe found working."""

    seccomp: Seccomp = field(default_factory=Seccomp)
    landlock: Landlock = field(default_factory=Landlock)
    switch_user: bool = field(default_factory=lambda: os.geteuid() == 0)  # root: drop to SANDBOX_UID
    working: dict[str, bool] = field(default_factory=dict)  # layer name -> found working by probe()
    libc: ctypes.CDLL = field(default_factory=lambda: ctypes.CDLL(None, use_errno=True))  # loaded once


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def apply_limits(limits: Limits) -> None:
    """Set the rlimits of this process (call in the child, after fork, before the program)."""
    base = limits.base_bytes
    if base <= 0:
        try:
            base = _address_space_bytes()
        except (OSError, ValueError):
            base = 256 << 20
    settings = [
        (resource.RLIMIT_AS, base + limits.memory_mb * (1 << 20)),
        (resource.RLIMIT_CPU, max(1, int(limits.cpu_s))),  # soft == hard: SIGKILL, not SIGXCPU
        (resource.RLIMIT_FSIZE, limits.max_file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, value in settings:
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _prctl(libc: ctypes.CDLL, option: int, value: int) -> bool:
    return libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)) == 0


def _switch_user() -> bool:
    """Root only: drop supplementary groups, then become SANDBOX_UID/SANDBOX_GID for good."""
    try:
        os.setgroups([])
        os.setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    except OSError:
        return False
    return os.geteuid() == SANDBOX_UID and os.getuid() == SANDBOX_UID


def confine_self(conf: Confinement, limits: Limits | None, parent: int) -> None:
    """Apply every layer to this (forked) process, and ``limits`` when given; exit at once if a
    layer the probe found working fails.

    ``parent`` is the zygote's pid: the child dies with it (and exits if it is already gone).
    """
    libc = conf.libc
    want = conf.working
    if limits is not None:
        apply_limits(limits)
    ok = True
    if want.get("user", False):
        ok &= _switch_user()
    # After the credential change: the kernel clears the parent-death signal on one.
    ok &= _prctl(libc, _PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(CONFINEMENT_FAILED)
    ok &= _prctl(libc, _PR_SET_DUMPABLE, 0)
    if want.get("landlock", False):
        ok &= conf.landlock.restrict()
    if want.get("seccomp", False):
        ok &= conf.seccomp.load()
    if not ok:
        os._exit(CONFINEMENT_FAILED)


# --- the probe -----------------------------------------------------------------------------------
def _try_layers(conf: Confinement, zygote_pid: int) -> dict[str, object]:
    """In a throw-away child: apply each layer and check that it really holds."""
    libc = conf.libc
    out: dict[str, object] = {}
    if conf.switch_user:
        out["user"] = _switch_user()
    _prctl(libc, _PR_SET_DUMPABLE, 0)
    out["landlock"] = conf.landlock.restrict() if conf.landlock.available else False
    loaded = conf.seccomp.load() if conf.seccomp.available else False
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        out["seccomp"] = False
    except PermissionError:
        out["seccomp"] = loaded
    try:
        with open(f"/proc/{zygote_pid}/environ", "rb") as fh:
            fh.read(1)
        out["proc"] = False
    except OSError:
        out["proc"] = True
    return out


_REASONS = {
    "seccomp": "the seccomp filter could not be loaded or did not block socket()",
    "landlock": "the Landlock ruleset could not be applied",
    "user": f"switching to uid {SANDBOX_UID} failed",
    "proc": "a confined child can still read /proc/<pid>/environ of the zygote",
}


def probe(conf: Confinement, zygote_pid: int) -> dict[str, object]:
    """Check each layer in a throw-away child; set ``conf.working``; return the report for the host:
    ``{layer: bool, layer + "_reason": why not}`` for seccomp, landlock, user and proc."""
    import json

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(_try_layers(conf, zygote_pid)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        raw = fh.read()
    os.waitpid(pid, 0)
    try:
        seen = json.loads(raw) if raw else {}
    except ValueError:
        seen = {}
    report: dict[str, object] = {}
    for layer in ("seccomp", "landlock", "user", "proc"):
        ok = bool(seen.get(layer))
        report[layer] = ok
        report[f"{layer}_reason"] = "" if ok else _unavailable_reason(conf, layer)
    report["landlock_abi"] = conf.landlock.abi
    report["uid"] = SANDBOX_UID if report["user"] else os.geteuid()
    conf.working = {layer: bool(report[layer]) for layer in ("seccomp", "landlock", "user")}
    return report


def _unavailable_reason(conf: Confinement, layer: str) -> str:
    if layer == "seccomp" and not conf.seccomp.available:
        return conf.seccomp.reason
    if layer == "landlock" and not conf.landlock.available:
        return conf.landlock.reason
    if layer == "user" and not conf.switch_user:
        return "the zygote does not run as root, so children keep its user"
    if layer == "proc":
        return ("neither an unprivileged user nor Landlock keeps a confined child from reading "
                "/proc/<pid>/environ of processes of the same user")
    return _REASONS[layer]
