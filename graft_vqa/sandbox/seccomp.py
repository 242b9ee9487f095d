"""The seccomp layer of the sandbox: a filter built once in the zygote, loaded by each child.

``Seccomp`` builds a libseccomp filter (through ``ctypes``; no Python binding needed) that answers
``EPERM`` to the system calls a program never needs: new processes and programs, sockets,
signals to other processes, tracing and reading other processes' memory, file creation,
renaming and removal, opening files for writing, mounts, namespaces, kernel modules, BPF,
credential changes. The filter is exported once as raw BPF, so a child installs it with two
``prctl`` calls instead of asking libseccomp to generate it again (that took about 1.5 ms per
child). Where libseccomp or the kernel feature is missing the sandbox still runs, and says so.

This module imports only the standard library: the zygote loads it.
"""
from __future__ import annotations

import ctypes
import os

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_EPERM = 0x00050000 | 1
_CMP_MASKED_EQ = 7
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def no_new_privs(libc: ctypes.CDLL) -> bool:
    """Set ``no_new_privs`` on this process (what seccomp and Landlock both need first); True on success."""
    return libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0


DENIED_SYSCALLS = (
    # processes, programs, threads
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    # other processes: signals, tracing, memory, file descriptors
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev",
    "process_madvise", "kcmp",
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # file system changes
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "mknod", "mknodat", "unlink",
    "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "symlink",
    "symlinkat", "link", "linkat", "chmod", "fchmod", "fchmodat", "chown", "fchown", "fchownat",
    "lchown", "truncate", "creat", "openat2", "open_by_handle_at", "name_to_handle_at",
    "fsopen", "fsmount", "fsconfig", "move_mount", "open_tree",
    # kernel facilities
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "kexec_load", "kexec_file_load", "iopl",
    "ioperm", "personality", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "memfd_create",
    # credentials and process attributes
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "prctl", "seccomp",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
)
"""System calls a sandboxed program may never make (answered with EPERM)."""

_WRITE_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:  # not under its usual name: ask the (slower, subprocess-using) finder
        from ctypes import util

        lib = ctypes.CDLL(util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return lib


def _add_rules(lib: ctypes.CDLL, ctx: int) -> str:
    """Add the deny rules to ``ctx``; return a reason on failure, "" on success."""
    for call in DENIED_SYSCALLS:
        nr = lib.seccomp_syscall_resolve_name(call.encode())
        if nr >= 0 and lib.seccomp_rule_add_array(ctx, _ACT_ERRNO_EPERM, nr, 0, None) < 0:
            return f"could not add a rule for {call}"
    for call, argno in (("open", 1), ("openat", 2)):
        nr = lib.seccomp_syscall_resolve_name(call.encode())
        if nr < 0:
            continue
        for flag in _WRITE_FLAGS:
            cmp = _ArgCmp(argno, _CMP_MASKED_EQ, flag, flag)
            if lib.seccomp_rule_add_array(ctx, _ACT_ERRNO_EPERM, nr, 1, ctypes.byref(cmp)) < 0:
                return f"could not add a rule for {call} with flag {flag:#o}"
    return ""


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    """The filter as raw BPF instructions (``struct sock_filter``, 8 bytes each)."""
    read_fd, write_fd = os.pipe()
    try:
        if lib.seccomp_export_bpf(ctx, write_fd) < 0:
            raise OSError(ctypes.get_errno(), "seccomp_export_bpf failed")
        os.close(write_fd)
        write_fd = -1
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


class Seccomp:
    """A seccomp filter prepared once; ``load()`` installs it in the calling process."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self._program: ctypes.Array | None = None
        self._fprog: _SockFprog | None = None
        self._libc: ctypes.CDLL | None = None
        try:
            self._prepare()
        except (OSError, AttributeError) as exc:
            self.reason = f"libseccomp unusable: {exc}"

    def _prepare(self) -> None:
        lib = _libseccomp()
        ctx = lib.seccomp_init(_ACT_ALLOW)
        if not ctx:
            self.reason = "seccomp_init failed"
            return
        try:
            self.reason = _add_rules(lib, ctx)
            if self.reason:
                return
            program = _export(lib, ctx)
        finally:
            lib.seccomp_release(ctx)
        if not program or len(program) % 8 or len(program) // 8 > 0xFFFF:
            self.reason = f"libseccomp exported a malformed filter ({len(program)} bytes)"
            return
        self._program = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._program))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.available = True

    def load(self) -> bool:
        """Install the filter in this process (sets no_new_privs first); True on success."""
        if not self.available or self._libc is None:
            return False
        libc = self._libc
        if not no_new_privs(libc):
            return False
        return libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER),
                          ctypes.byref(self._fprog), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
