"""Layer 3 of the sandbox, host side: run one program in a fresh child and serve its API calls.

The host never runs program code. It sends the program to a new child, then answers the
child's requests: each names an API member of an ImagePatch it holds a handle to; the host
checks the name against ``api_members(type(image_patch))``, calls the real object, and replies
with plain data (ImagePatch results become handles). It stops the child on the wall clock
(time spent inside API calls is not counted), on the call budget, or on a malformed request.
"""
from __future__ import annotations

import logging
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..api import api_members
from graft_vqa.core.errors import SandboxError
from .process import Zygote, default_zygote
from .wire import HANDLE_KEY, PeerClosed, WireError, from_plain, quote_line, recv_msg, send_msg, to_plain

log = logging.getLogger(__name__)

STATUSES = ("ok", "refused", "timeout", "memory", "error")
"""Every ``Execution.status``."""

MAX_SOURCE_CHARS = 100_000
"""Longest program the sandbox accepts."""

TIMEOUT_GRACE_S = 0.3
"""Extra wall time the host gives the child to report its own timeout (with the line) first."""


@dataclass
class Execution:
    """The outcome of one sandboxed program."""

    status: str  # one of STATUSES
    value: Any = None  # the program's return value as plain data; ImagePatch handles become the real patches
    error: str | None = None  # what went wrong, quoting the failing line when known
    line: int | None = None  # the failing line of the program, when known
    calls: int = 0  # API calls the program made
    elapsed_s: float = 0.0  # wall time of the whole run
    stdout: str = ""  # what the program printed (capped)
    patches: list[Any] = field(default_factory=list)  # every ImagePatch the API handed out, in order

    @property
    def ok(self) -> bool:
        """True when the program ran to completion."""
        return self.status == "ok"


@dataclass
class _Settings:
    timeout_s: float
    call_budget: int
    memory_mb: int
    max_output_bytes: int
    max_stdout_bytes: int


_API_CACHE: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _api_names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """``(methods, properties)`` of ``api_members(cls)``, cached per class."""
    if cls not in _API_CACHE:
        members = api_members(cls)
        props = frozenset(n for n, m in members.items() if isinstance(m, property))
        _API_CACHE[cls] = (frozenset(members) - props, props)
    return _API_CACHE[cls]


class _Session:
    """Serves one child: handle table, call counting, deadline."""

    def __init__(self, source: str, root: Any, settings: _Settings) -> None:
        self.source, self.settings = source, settings
        self.patch_type = type(root)
        self.methods, self.properties = _api_names(self.patch_type)
        self.handles: list[Any] = [root]
        self.handle_of: dict[int, int] = {id(root): 0}
        self.calls = 0

    def init_message(self) -> dict[str, Any]:
        s = self.settings
        return {"source": self.source, "methods": sorted(self.methods),
                "properties": sorted(self.properties), "timeout_s": s.timeout_s,
                "memory_mb": s.memory_mb, "max_output_bytes": s.max_output_bytes,
                "max_stdout_bytes": s.max_stdout_bytes}

    def fail(self, status: str, message: str, line: int | None = None) -> Execution:
        return Execution(status, error=quote_line(self.source, line, message), line=line)

    def _encode(self, obj: Any) -> Any:
        if isinstance(obj, self.patch_type):
            if id(obj) not in self.handle_of:
                self.handle_of[id(obj)] = len(self.handles)
                self.handles.append(obj)
            return {HANDLE_KEY: self.handle_of[id(obj)]}
        if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
            return obj.item()
        geo = getattr(obj, "__geo_interface__", None)
        if isinstance(geo, dict):
            return to_plain(geo, max_bytes=self.settings.max_output_bytes)
        return NotImplemented

    def _decode(self, handle: int) -> Any:
        if not 0 <= handle < len(self.handles):
            raise WireError(f"unknown ImagePatch handle {handle}")
        return self.handles[handle]

    def serve(self, sock: socket.socket) -> Execution | None:
        """Answer the child until it reports; None when it died without a report."""
        send_msg(sock, self.init_message())
        deadline = time.monotonic() + self.settings.timeout_s + TIMEOUT_GRACE_S
        limit = self.settings.max_output_bytes + 65536
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.fail("timeout", f"the program ran longer than {self.settings.timeout_s:g} s "
                                 "(timeout_s) and was stopped")
            sock.settimeout(remaining)
            try:
                msg = recv_msg(sock, limit)
            except (TimeoutError, socket.timeout):
                return self.fail("timeout", f"the program ran longer than {self.settings.timeout_s:g} s "
                                 "(timeout_s) and was stopped")
            except PeerClosed:
                return None
            except WireError as exc:
                return self.fail("error", f"the program sent an invalid message: {exc}")
            op = msg.get("op")
            if op == "done":
                return self._done(msg)
            if op not in ("call", "get"):
                return self.fail("refused", f"unknown request {op!r} from the sandbox")
            line = msg.get("line") if type(msg.get("line")) is int else None
            self.calls += 1
            if self.calls > self.settings.call_budget:
                return self.fail("error", f"the program made more than {self.settings.call_budget} "
                                 "API calls (call_budget); call find() once and reuse its result", line)
            started = time.monotonic()
            reply = self._dispatch(op, msg)
            if "refused" in reply:
                return self.fail("refused", reply["refused"], line)
            deadline += time.monotonic() - started
            send_msg(sock, reply)

    def _dispatch(self, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Run one API call; ``{"refused": why}`` when the request itself is not allowed."""
        name, handle = msg.get("name"), msg.get("handle")
        allowed = self.properties if op == "get" else self.methods
        if type(name) is not str or name not in allowed or type(handle) is not int:
            return {"refused": f"request for `{name}` is not part of the ImagePatch API"}
        try:
            target = self._decode(handle)
            args = from_plain(msg.get("args", []), self._decode)
            kwargs = from_plain(msg.get("kwargs", {}), self._decode)
        except WireError as exc:
            return {"refused": f"bad arguments for `{name}`: {exc}"}
        if type(args) is not list or type(kwargs) is not dict:
            return {"refused": f"bad arguments for `{name}`"}
        try:
            value = getattr(target, name) if op == "get" else getattr(target, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the error goes back to the program, typed
            text = str(exc)[:1000]
            return {"ok": False, "error": f"{name}: {type(exc).__name__}: {text}"}
        try:
            return {"ok": True, "value": to_plain(value, self._encode, self.settings.max_output_bytes)}
        except WireError as exc:
            return {"ok": False, "error": f"{name} returned a value the sandbox cannot pass: {exc}"}

    def _done(self, msg: dict[str, Any]) -> Execution:
        status = msg.get("status")
        line = msg.get("line") if type(msg.get("line")) is int else None
        stdout = msg.get("stdout") if type(msg.get("stdout")) is str else ""
        if status not in STATUSES:
            return self.fail("error", f"the sandbox reported an unknown status {status!r}")
        if status != "ok":
            result = self.fail(status, str(msg.get("error") or status), line)
        else:
            try:
                result = Execution("ok", value=from_plain(msg.get("value"), self._decode))
            except WireError as exc:
                result = self.fail("error", f"the program's result: {exc}")
        result.stdout = stdout[: self.settings.max_stdout_bytes + 32]
        return result


def _from_exit(status: dict[str, Any], session: _Session) -> Execution:
    sig = status.get("signal")
    if sig == signal.SIGXCPU:
        return session.fail("timeout", "the program used up its CPU time (timeout_s) and was stopped")
    if sig == signal.SIGKILL:
        return session.fail("memory", "the program was killed by the system, probably for memory")
    if sig is not None:
        return session.fail("error", f"the program crashed ({signal.Signals(sig).name})")
    return session.fail("error", f"the sandboxed process exited unexpectedly (code {status.get('code')})")


def run(source: str, image_patch: Any, *, timeout_s: float = 30.0, call_budget: int = 200,
        memory_mb: int = 512, max_output_bytes: int = 64 * 1024, max_stdout_bytes: int = 16 * 1024,
        zygote: Zygote | None = None) -> Execution:
    """Run ``source`` (which defines ``execute_command(image_patch)``) in the sandbox.

    ``timeout_s`` bounds the program's own time (API calls excluded; ``call_budget`` bounds
    those); ``memory_mb`` is the address space the program may add; results, API replies and
    arguments above ``max_output_bytes`` of JSON are refused with status ``error``.
    Returns an :class:`Execution`; raises :class:`SandboxError` only when the sandbox itself fails.
    """
    started = time.monotonic()
    settings = _Settings(float(timeout_s), int(call_budget), int(memory_mb), int(max_output_bytes),
                         int(max_stdout_bytes))
    session = _Session(source if isinstance(source, str) else "", image_patch, settings)
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        result = session.fail("error", f"the program must be a string of at most {MAX_SOURCE_CHARS} characters")
        result.elapsed_s = time.monotonic() - started
        return result
    zyg = zygote or default_zygote()
    host_end, child_end = socket.socketpair()
    try:
        pid = zyg.spawn(child_end.fileno())
    except BaseException:
        host_end.close()
        raise
    finally:
        child_end.close()
    result: Execution | None = None
    try:
        result = session.serve(host_end)
    except OSError as exc:
        log.debug("sandbox channel failed: %s", exc)
    finally:
        host_end.close()
        exit_status = zyg.finish(pid, kill=result is not None)
    if result is None:
        result = _from_exit(exit_status, session)
    result.calls = session.calls
    result.patches = session.handles[1:]
    result.elapsed_s = time.monotonic() - started
    return result


def capabilities(zygote: Zygote | None = None) -> dict[str, Any]:
    """What confinement this machine gives programs (starts the zygote if needed)."""
    hello = (zygote or default_zygote()).ensure_started()
    return {"restricted_python": True, "process_isolation": True, "rlimits": True,
            "seccomp": bool(hello.get("seccomp")), "seccomp_reason": hello.get("reason", ""),
            "zygote_pid": hello.get("pid")}


__all__ = ["Execution", "STATUSES", "run", "capabilities", "SandboxError"]
