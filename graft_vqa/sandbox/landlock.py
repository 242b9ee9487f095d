"""The Landlock layer of the sandbox: no file, no TCP, no signal outside the child's own domain.

A Landlock ruleset is created once in the zygote. It handles every file-system right the kernel
knows and allows none, so a child that restricts itself with it can open no file at all, ``/proc``
included (another process's ``environ``, ``cmdline`` or ``mem``); it handles TCP bind and connect
(ABI 4) and, from ABI 6, scopes signals and abstract UNIX sockets to the child's own domain.
Landlock also refuses ``ptrace``-mode access to any process outside the domain. Each child calls
``landlock_restrict_self`` with the prepared ruleset: one system call. Where the kernel has no
Landlock the sandbox still runs, and says so.

This module imports only the standard library: the zygote loads it.
"""
from __future__ import annotations

import ctypes
import os
import struct
import sys

from .seccomp import no_new_privs

# System call numbers (the same on every architecture: Landlock came after the table was unified).
_SYS_CREATE_RULESET, _SYS_RESTRICT_SELF = 444, 446
_CREATE_RULESET_VERSION = 1

# File-system rights by ABI: 1 has bits 0-12, 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV.
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}
_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET, SIGNAL (ABI 6)


def _fs_rights(abi: int) -> int:
    return (1 << _FS_BITS_BY_ABI.get(abi, 16)) - 1


def _ruleset_attr(abi: int) -> bytes:
    """``struct landlock_ruleset_attr`` for ``abi``: only the fields that ABI knows."""
    if abi >= 6:
        return struct.pack("=QQQ", _fs_rights(abi), _NET_ALL, _SCOPE_ALL)
    if abi >= 4:
        return struct.pack("=QQ", _fs_rights(abi), _NET_ALL)
    return struct.pack("=Q", _fs_rights(abi))


class Landlock:
    """A deny-everything Landlock ruleset prepared once; ``restrict()`` applies it to this process."""

    def __init__(self) -> None:
        self.abi = 0  # the kernel's Landlock ABI version (0: none)
        self.reason = ""  # why Landlock is not available, when it is not
        self._fd = -1
        self._libc: ctypes.CDLL | None = None
        try:
            self._prepare()
        except (OSError, AttributeError) as exc:
            self.reason = f"Landlock unusable: {exc}"

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def _prepare(self) -> None:
        if not sys.platform.startswith("linux"):
            self.reason = "Landlock needs Linux"
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
        if abi < 1:
            err = ctypes.get_errno()
            self.reason = f"the kernel has no Landlock ({os.strerror(err) if err else 'ABI unknown'})"
            return
        attr = _ruleset_attr(abi)
        buf = ctypes.create_string_buffer(attr, len(attr))
        fd = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), buf, ctypes.c_size_t(len(attr)),
                          ctypes.c_uint32(0))
        if fd < 0:
            self.reason = f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}"
            return
        os.set_inheritable(fd, False)
        self.abi, self._fd, self._libc = int(abi), int(fd), libc

    def restrict(self) -> bool:
        """Restrict this process (and everything it could start) by the ruleset; True on success."""
        if not self.available or self._libc is None:
            return False
        libc = self._libc
        if not no_new_privs(libc):
            return False
        ok = libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(self._fd),
                          ctypes.c_uint32(0)) == 0
        self.close()
        return ok

    def close(self) -> None:
        """Close the ruleset (a child does so once restricted; it needs the ruleset no more)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
