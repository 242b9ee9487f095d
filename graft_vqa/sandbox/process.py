"""Host side of the zygote: start it lazily, take children from it, reap them, restart it if it died.

The host holds one spare child: ``spawn`` hands it out and at once asks the zygote for the next
(the reply is read on the next request), so the fork, confinement and warm-up of the next
child happen while the current program runs, and a program's start costs no round trip.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from graft_vqa.core.errors import SandboxError

log = logging.getLogger(__name__)

BOOT = """
import sys, types
for name, path in (("graft_vqa", sys.argv[1]), ("graft_vqa.sandbox", sys.argv[1] + "/sandbox")):
    pkg = types.ModuleType(name)
    pkg.__path__ = [path]
    sys.modules[name] = pkg
from graft_vqa.sandbox.zygote import main
main(int(sys.argv[2]))
"""
"""The ``python -c`` program that starts a zygote without importing the ``graft_vqa`` and
``graft_vqa.sandbox`` package ``__init__`` files (torch, the host side): bare package objects stand
in for them, so the zygote holds only what its children run (fewer pages to fork and copy)."""

ENV_ALLOWED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LANGUAGE", "TZ", "LD_LIBRARY_PATH")
"""The only environment variables the zygote (and so every program's child) inherits: enough
to find libseccomp and format text. API keys and other host secrets never reach a program. The
venv's packages are found from ``sys.executable`` itself (``python -I`` ignores ``PYTHON*``)."""

CONTROL_TIMEOUT_S = 30.0
"""How long the host waits for the zygote to answer one request (start-up included)."""


def zygote_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the zygote starts with: ``ENV_ALLOWED`` taken from ``environ`` (default
    ``os.environ``), and a default ``PATH`` when there is none."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in ENV_ALLOWED if name in source}
    env.setdefault("PATH", os.defpath)
    return env


LAYERS = {
    "seccomp": "seccomp (system calls such as socket, fork, kill, tgkill and ptrace are not denied)",
    "landlock": "Landlock (files, TCP and signals are not scoped to the program's process)",
    "user": "an unprivileged user for programs",
    "proc": "isolation from other processes' /proc entries (environment, memory)",
}
"""The confinement layers the zygote probes, as the warnings name them."""

def _protect_host() -> bool:
    """Make this (host) process non-dumpable: its /proc entries become root's, out of reach of a
    child running as the same user. Only done when no other layer isolates children."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


_warned_layers: set[str] = set()
_warned_lock = threading.Lock()


def warn_missing_layers(hello: dict[str, Any]) -> list[str]:
    """Log one warning per confinement layer this system does not allow, once per process;
    return the layers warned about now. A missing unprivileged user is only worth a warning
    when nothing else (Landlock) isolates programs from other processes."""
    missing = [layer for layer in LAYERS if not hello.get(layer)]
    if "proc" in missing and _protect_host():
        hello["proc_reason"] = (f"{hello.get('proc_reason') or 'no layer isolates it'}; this process "
                                "made itself non-dumpable (PR_SET_DUMPABLE 0) so at least its own "
                                "/proc/<pid>/environ is out of a program's reach")
    if "user" in missing and hello.get("proc"):
        missing.remove("user")  # not root: Landlock already isolates the child from other processes
    warned = []
    with _warned_lock:
        for layer in missing:
            if layer in _warned_layers:
                continue
            _warned_layers.add(layer)
            warned.append(layer)
            log.warning("sandbox: no %s: %s; programs still run under RestrictedPython, in a "
                        "separate process with rlimits and the other layers",
                        LAYERS[layer], hello.get(f"{layer}_reason") or "unknown reason")
    return warned


class ChildSource(Protocol):
    """Where ``sandbox.run`` gets the process for a program (a :class:`Zygote`, or a test's fake)."""

    def spawn(self, warm_compiler: bool = False) -> tuple[int, socket.socket]:
        """A child waiting for its program: its pid and the host's end of its channel
        (``warm_compiler``: the program is new, so the next one likely is too)."""

    def release(self, pid: int) -> None:
        """The child reported: nothing more is needed from it."""

    def finish(self, pid: int, kill: bool) -> dict[str, Any]:
        """(Kill and) reap a child that ended without a report: its exit status."""


class Zygote:
    """A handle on one zygote process; thread-safe (requests are serialised by a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._ctrl: socket.socket | None = None
        self._spare: tuple[int, socket.socket] | None = None  # a child waiting for its program
        self._pending = 0  # spawn requests sent whose reply (a child) is not read yet
        self.hello: dict[str, Any] = {}
        self._owner = os.getpid()  # a forked host must not share its parent's zygote

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        package_dir = str(Path(__file__).resolve().parents[1])
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, package_dir, str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, env=zygote_env())
        finally:
            child.close()
        parent.settimeout(CONTROL_TIMEOUT_S)
        self._ctrl = parent
        self.hello = self._receive()[0]
        warn_missing_layers(self.hello)

    def _ready_locked(self) -> bool:
        """Start the zygote unless this process has one that is still there; True when it started one."""
        if self._owner != os.getpid():  # forked: the parent's zygote and spare are not ours
            for inherited in (self._ctrl, self._spare[1] if self._spare else None):
                if inherited is not None:
                    inherited.close()  # this process's copies only: the parent keeps its own
            self._ctrl, self._proc, self._spare, self._pending = None, None, None, 0
            self._owner = os.getpid()
        if self._exited_locked():
            self._close_locked()  # and its children died with it
        if self._ctrl is not None:
            return False
        self._start()
        return True

    def _ours_locked(self) -> bool:
        """True when this process holds a zygote it started (not gone, not its parent's)."""
        return self._ctrl is not None and self._owner == os.getpid()

    def _exited_locked(self) -> bool:
        """True when the zygote closed its end of the control socket (it exited)."""
        ctrl = self._ctrl
        return ctrl is not None and bool(select.select([ctrl], [], [], 0)[0]) \
            and ctrl.recv(1, socket.MSG_PEEK) == b""

    def _receive(self) -> tuple[dict[str, Any], list[int]]:
        assert self._ctrl is not None
        data, fds, _, _ = socket.recv_fds(self._ctrl, 65536, 1)
        if not data:
            _close_fds(fds)
            raise ConnectionError("the sandbox zygote exited")
        try:
            return json.loads(data), fds
        except ValueError:
            _close_fds(fds)
            raise

    def _send(self, msg: dict[str, Any]) -> None:
        assert self._ctrl is not None
        self._ctrl.send(json.dumps(msg).encode())

    def _child_reply(self) -> tuple[int, socket.socket]:
        """Read the reply to one spawn request: the new child's pid and the host's end of its channel."""
        reply, fds = self._receive()
        if "pid" not in reply or len(fds) != 1:
            _close_fds(fds)
            raise SandboxError(f"the sandbox could not start a program: {reply.get('error', reply)}")
        return int(reply["pid"]), socket.socket(fileno=fds[0])

    def _ask_ahead_locked(self, warm_compiler: bool = False) -> None:
        """Ask for the next child now; its reply is read on the next request (``_drain_locked``)."""
        self._send({"op": "spawn", "compile": warm_compiler})
        self._pending += 1

    def _drain_locked(self) -> None:
        """Read the replies to spawn requests sent ahead; keep the child, release any extra."""
        while self._pending:
            self._pending -= 1
            try:
                pid, sock = self._child_reply()
            except SandboxError as exc:  # the zygote could not fork then; the next request asks again
                log.warning("sandbox: a child asked for ahead did not start: %s", exc)
                continue
            if self._spare is None:
                self._spare = (pid, sock)
            else:
                sock.close()
                self._send({"op": "release", "pid": pid})

    def _take_spare_locked(self) -> tuple[int, socket.socket] | None:
        """The spare child, if it is still waiting (one that died or spoke out of turn is released)."""
        self._drain_locked()
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        pid, sock = spare
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"": it died; data: out of turn
        except BlockingIOError:
            return spare  # silent and connected: waiting for its program
        except OSError:
            pass
        sock.close()
        self._send({"op": "release", "pid": pid})
        return None

    def spawn(self, warm_compiler: bool = False) -> tuple[int, socket.socket]:
        """A child ready for a program: its pid and the host's end of its channel (the caller
        closes it). The next child is asked for at once, to be ready for the next program; with
        ``warm_compiler`` (this program is new to the code cache, so the next likely is too, as
        an LLM's programs are) it warms up its compiler as well, which costs about 2 ms of CPU
        while it waits and saves about 1 ms of a new program's compile."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    self._ready_locked()
                    child = self._take_spare_locked()
                    if child is None:
                        self._send({"op": "spawn"})
                        child = self._child_reply()
                    self._ask_ahead_locked(warm_compiler)
                    return child
                except (OSError, ValueError) as exc:
                    self._close_locked()
                    if attempt:
                        raise SandboxError(f"the sandbox zygote failed ({exc}); check that "
                                           f"{sys.executable} can run and fork") from exc
            raise AssertionError("unreachable")

    def ensure_started(self) -> dict[str, Any]:
        """Start the zygote if needed (and ask it for a first child); return its hello message
        (pid, which confinement layers work)."""
        with self._lock:
            try:
                if self._ready_locked():
                    self._ask_ahead_locked()
            except (OSError, ValueError) as exc:
                self._close_locked()
                raise SandboxError(f"the sandbox zygote could not start: {exc}") from exc
            return dict(self.hello)

    def release(self, pid: int) -> None:
        """Tell the zygote the host needs nothing more from child ``pid``: it kills and reaps it
        on its own time (no reply is awaited)."""
        with self._lock:
            if not self._ours_locked():
                return  # that zygote is gone, and its children with it
            try:
                self._send({"op": "release", "pid": pid})
            except OSError:
                self._close_locked()

    def finish(self, pid: int, kill: bool) -> dict[str, Any]:
        """(Kill and) reap child ``pid``; return ``{"code": ..., "signal": ...}``."""
        with self._lock:
            try:
                if not self._ours_locked():
                    raise ConnectionError("the zygote that started this child is gone")
                self._drain_locked()
                self._send({"op": "finish", "pid": pid, "kill": kill})
                return self._receive()[0]
            except (OSError, ValueError, SandboxError) as exc:
                self._close_locked()
                return {"code": None, "signal": None, "error": str(exc)}

    def _close_locked(self) -> None:
        if self._spare is not None:
            self._spare[1].close()
            self._spare = None
        self._pending = 0
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the zygote (it kills its children); a later request starts a new one."""
        with self._lock:
            self._close_locked()


def _close_fds(fds: list[int]) -> None:
    """Close file descriptors received with a reply that is not used."""
    for fd in fds:
        os.close(fd)


_default: Zygote | None = None
_default_lock = threading.Lock()


def default_zygote() -> Zygote:
    """The process-wide zygote, created on first use and stopped at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Zygote()
            atexit.register(_default.close)
        return _default
