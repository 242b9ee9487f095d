"""Layer 2 of the sandbox: OS confinement of a forked child (rlimits, seccomp, parent-death kill).

``Seccomp`` builds, once in the zygote, a libseccomp filter (through ``ctypes``; no Python
binding needed) that answers ``EPERM`` to the system calls a program never needs: new
processes and programs (``fork``, ``clone``, ``execve``), sockets, ``ptrace``, file creation,
renaming and removal, opening files for writing, mounts, namespaces, kernel modules, BPF.
Each child loads it after fork. Where libseccomp or the kernel feature is missing the
sandbox still runs, and reports it (``capabilities()["seccomp"]`` is False, with a reason).

This module imports only the standard library: the zygote loads it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
from dataclasses import dataclass

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_EPERM = 0x00050000 | 1
_CMP_MASKED_EQ = 7
_PR_SET_PDEATHSIG = 1

DENIED_SYSCALLS = (
    "fork", "vfork", "clone", "clone3", "execve", "execveat", "ptrace", "process_vm_readv",
    "process_vm_writev", "socket", "socketpair", "connect", "bind", "listen", "accept",
    "accept4", "kill", "tkill", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "mknod", "mknodat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir",
    "mkdirat", "rmdir", "symlink", "symlinkat", "link", "linkat", "chmod", "fchmod", "fchmodat",
    "chown", "fchown", "fchownat", "lchown", "truncate", "creat", "openat2", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "kexec_load", "iopl", "ioperm",
    "personality", "userfaultfd", "io_uring_setup", "memfd_create", "setuid", "setgid",
    "setreuid", "setregid", "setresuid", "setresgid", "prctl",
)
"""System calls a sandboxed program may never make (answered with EPERM)."""

_WRITE_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class Seccomp:
    """A seccomp filter prepared once; ``load()`` installs it in the calling process."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self._lib = None
        self._ctx = None
        try:
            self._prepare()
        except (OSError, AttributeError) as exc:
            self.reason = f"libseccomp unusable: {exc}"

    def _prepare(self) -> None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                              ctypes.c_uint, ctypes.c_void_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        ctx = lib.seccomp_init(_ACT_ALLOW)
        if not ctx:
            self.reason = "seccomp_init failed"
            return
        for call in DENIED_SYSCALLS:
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            if nr >= 0 and lib.seccomp_rule_add_array(ctx, _ACT_ERRNO_EPERM, nr, 0, None) < 0:
                self.reason = f"could not add a rule for {call}"
                return
        for call, argno in (("open", 1), ("openat", 2)):
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            for flag in _WRITE_FLAGS:
                cmp = _ArgCmp(argno, _CMP_MASKED_EQ, flag, flag)
                if nr >= 0:
                    lib.seccomp_rule_add_array(ctx, _ACT_ERRNO_EPERM, nr, 1, ctypes.byref(cmp))
        self._lib, self._ctx, self.available = lib, ctx, True

    def load(self) -> bool:
        """Install the filter in this process; True on success."""
        if not self.available:
            return False
        return self._lib.seccomp_load(self._ctx) == 0


@dataclass
class Limits:
    """OS limits for one sandboxed program."""

    memory_mb: int = 512  # address space the program may add on top of the child's start size
    cpu_s: int = 31  # CPU seconds before the kernel sends SIGXCPU (and SIGKILL one second later)
    max_open_files: int = 32  # RLIMIT_NOFILE
    max_file_bytes: int = 0  # RLIMIT_FSIZE: a program may not write files


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def kill_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux only; best effort)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def apply_limits(limits: Limits) -> None:
    """Set the rlimits of this process (call in the child, after fork, before the program)."""
    try:
        base = _address_space_bytes()
    except (OSError, ValueError):
        base = 256 << 20
    as_bytes = base + limits.memory_mb * (1 << 20)
    settings = [
        (resource.RLIMIT_AS, as_bytes),
        (resource.RLIMIT_CPU, max(1, int(limits.cpu_s))),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, value in settings:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        new_hard = value + 1 if which == resource.RLIMIT_CPU else value
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        resource.setrlimit(which, (value, new_hard))
