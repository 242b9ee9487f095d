"""Layer 3 of the sandbox, host side: run one program in a fresh child and serve its API calls.

The host never runs program code. It sends the program to a new child, then answers the
child's requests: each names an API member of an ImagePatch it holds a handle to; the host
checks the name against ``api_members(type(image_patch))``, decodes patch handles in the
arguments, calls the real object under a :class:`~graft_vqa.api.CostMeter`, and replies with plain
data (ImagePatch results become handles). The program's return value is plain data: handles in it
are never decoded.

Limits: ``timeout_s`` is one wall-clock deadline for the whole program, host-side API work
included (API implementations check it as they charge their cost); ``cpu_s`` bounds the
program's own CPU time in the child; ``call_budget`` counts API calls and ``cost_budget`` their
cost (pairs checked, pixels scored, instances refined). Every string that comes back (value,
error, printed text) is cleaned (``core.text.clean_text``); nothing the child sends, however
malformed, makes :func:`run` raise.
"""
from __future__ import annotations

import logging
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..api import CostExceeded, CostMeter, api_members, metered
from ..core.errors import SandboxError
from ..core.text import clean_text, clean_value
from .child import report_limit
from .code_cache import CODE_CACHE
from .confine import CONFINEMENT_FAILED
from .process import ChildSource, Zygote, default_zygote
from .wire import (HANDLE_KEY, PeerClosed, TooLarge, WireError, WireTimeout, from_plain, kb,
                   quote_line, recv_msg, send_msg, to_plain)

log = logging.getLogger(__name__)

STATUSES = ("ok", "refused", "timeout", "memory", "error")
"""Every ``Execution.status``."""

MAX_SOURCE_CHARS = 100_000
"""Longest program the sandbox accepts."""

DEFAULT_CPU_S = 3.0
"""The program's own CPU seconds (honest programs need milliseconds; API work on the host is not
counted here but against ``timeout_s`` and ``cost_budget``)."""

DEFAULT_COST_BUDGET = 20_000_000.0
"""API cost units a program may spend (see ``graft_vqa.api.COST_UNIT``: about 20 s of host work)."""

MAX_ERROR_CHARS = 2000
"""Longest error message taken from the child."""

_PROGRAM_FRAME = re.compile(r'File "<program>", line (\d+)')




@dataclass
class Execution:
    """The outcome of one sandboxed program."""

    status: str  # one of STATUSES
    value: Any = None  # the program's return value as plain data (bool, int, float, str, lists, dicts)
    error: str | None = None  # what went wrong, quoting the failing line when known
    line: int | None = None  # the failing line of the program, when known
    calls: int = 0  # API calls the program made
    cost: float = 0.0  # API cost units the program spent (graft_vqa.api.COST_UNIT)
    elapsed_s: float = 0.0  # wall time of the whole run
    stdout: str = ""  # what the program printed (capped)
    patches: list[Any] = field(default_factory=list)  # every ImagePatch the API handed out, in order

    @property
    def ok(self) -> bool:
        """True when the program ran to completion."""
        return self.status == "ok"


@dataclass
class _Settings:
    timeout_s: float  # wall clock for the whole program, API calls included
    cpu_s: float  # the program's own CPU time in the child
    call_budget: int  # API calls
    cost_budget: float  # API cost units
    memory_mb: int  # address space the program may add
    max_output_bytes: int  # JSON of a result, an API reply or API arguments
    max_stdout_bytes: int  # characters of printed text kept


_API_CACHE: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _api_names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """``(methods, properties)`` of ``api_members(cls)``, cached per class."""
    if cls not in _API_CACHE:
        members = api_members(cls)
        props = frozenset(n for n, m in members.items() if isinstance(m, property))
        _API_CACHE[cls] = (frozenset(members) - props, props)
    return _API_CACHE[cls]


class _Session:
    """Serves one child: handle table, call counting and cost metering, the deadline."""

    def __init__(self, source: str, root: Any, settings: _Settings, deadline: float) -> None:
        self.source, self.settings, self.deadline = source, settings, deadline
        self.patch_type = type(root)
        self.methods, self.properties = _api_names(self.patch_type)
        self.handles: list[Any] = [root]
        self.handle_of: dict[int, int] = {id(root): 0}
        self.calls = 0
        self.last_line: int | None = None  # line of the latest API request
        self.compiled = False  # the child sent its compiled program
        self.cached_code = CODE_CACHE.get(source)  # the compile of this very source, when a child sent one
        self.meter = CostMeter(settings.cost_budget, deadline, settings.timeout_s)

    @property
    def untouched(self) -> bool:
        """True while the child has made no API call (so running the program again repeats nothing)."""
        return self.calls == 0

    def init_message(self) -> dict[str, Any]:
        s = self.settings
        cached = self.cached_code
        return {"source": self.source, **({"code": cached} if cached else {}), "methods": sorted(self.methods),
                "properties": sorted(self.properties), "cpu_s": s.cpu_s,
                "memory_mb": s.memory_mb, "max_output_bytes": s.max_output_bytes,
                "max_stdout_bytes": s.max_stdout_bytes}

    def fail(self, status: str, message: str, line: int | None = None) -> Execution:
        return Execution(status, error=quote_line(self.source, line, message), line=line)

    def timed_out(self, line: int | None = None) -> Execution:
        return self.fail("timeout", f"the program ran longer than {self.settings.timeout_s:g} s "
                         "(timeout_s, API calls included) and was stopped", line)

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
        limit = report_limit(self.settings.max_output_bytes, self.settings.max_stdout_bytes)
        while True:
            try:
                msg = recv_msg(sock, limit, self.deadline)
            except WireTimeout:
                return self.timed_out()
            except PeerClosed:
                return None
            except TooLarge as exc:
                return self.fail("error", f"the program's process sent a message of {kb(exc.size)} "
                                 f"(limit {kb(exc.limit)}); the sandbox stopped it")
            except WireError as exc:
                return self.fail("error", f"the program's process sent an invalid message ({exc}); "
                                 "the sandbox stopped it")
            op = msg.get("op")
            if op == "done":
                return self._done(msg)
            if op == "compiled" and self.calls == 0 and not self.compiled:
                # Once, before any call: the child sends it before the program runs (also when
                # the cached code would not load). At worst a program spoils its own entry.
                self.compiled = True
                if isinstance(msg.get("code"), str):
                    CODE_CACHE.put(self.source, msg["code"])
                continue
            if op not in ("call", "get"):
                return self.fail("refused", f"unknown request {clean_text(str(op))[:80]!r} from the sandbox")
            line = msg.get("line") if type(msg.get("line")) is int else None
            self.last_line = line
            self.calls += 1
            if self.calls > self.settings.call_budget:
                return self.fail("error", f"the program made more than {self.settings.call_budget} "
                                 "API calls (call_budget); call find() once and reuse its result", line)
            reply = self._dispatch(op, msg)
            if isinstance(reply, Execution):
                return reply
            if "refused" in reply:
                return self.fail("refused", reply["refused"], line)
            if time.monotonic() > self.deadline:
                return self.timed_out(line)
            send_msg(sock, reply)

    def _dispatch(self, op: str, msg: dict[str, Any]) -> dict[str, Any] | Execution:
        """Run one API call: the reply, ``{"refused": why}`` when the request itself is not allowed,
        or an :class:`Execution` when the call ran out of cost budget or time."""
        name, handle = msg.get("name"), msg.get("handle")
        allowed = self.properties if op == "get" else self.methods
        if type(name) is not str or name not in allowed or type(handle) is not int:
            shown = clean_text(name)[:80] if isinstance(name, str) else type(name).__name__
            return {"refused": f"request for `{shown}` is not part of the ImagePatch API"}
        args, kwargs = msg.get("args", []), msg.get("kwargs", {})
        if type(args) is not list or type(kwargs) is not dict:
            return {"refused": f"bad arguments for `{name}`"}
        try:
            target = self._decode(handle)
            args = from_plain(args, self._decode)
            kwargs = from_plain(kwargs, self._decode)
        except WireError as exc:
            return {"refused": f"bad arguments for `{name}`: {exc}"}
        line = self.last_line
        try:
            with metered(self.meter):
                value = getattr(target, name) if op == "get" else getattr(target, name)(*args, **kwargs)
        except CostExceeded as exc:
            return self.fail(exc.status, str(exc), line)
        except Exception as exc:  # noqa: BLE001 - the error goes back to the program, typed
            if self.meter.exceeded is not None:  # the API swallowed the limit and failed otherwise
                return self.fail(self.meter.exceeded.status, str(self.meter.exceeded), line)
            return {"ok": False, "error": clean_text(f"{name}: {type(exc).__name__}: {str(exc)[:1000]}")}
        if self.meter.exceeded is not None:
            return self.fail(self.meter.exceeded.status, str(self.meter.exceeded), line)
        try:
            return {"ok": True, "value": to_plain(value, self._encode, self.settings.max_output_bytes)}
        except TooLarge as exc:
            return {"ok": False, "error": f"{name} returned a value too large to pass ({exc.sizes()})"}
        except WireError as exc:
            return {"ok": False, "error": f"{name} returned a value the sandbox cannot pass: {exc}"}

    def _done(self, msg: dict[str, Any]) -> Execution:
        status = msg.get("status")
        line = msg.get("line") if type(msg.get("line")) is int else None
        stdout = msg.get("stdout") if type(msg.get("stdout")) is str else ""
        if status not in STATUSES:
            return self.fail("error", "the sandbox reported an unknown status "
                             f"{clean_text(str(status))[:80]!r}")
        if status != "ok":
            error = msg.get("error")
            text = error if isinstance(error, str) and error else str(status)
            result = self.fail(status, clean_text(text[:MAX_ERROR_CHARS]), line)
        elif _holds_handle(msg.get("value")):
            result = self.fail("error", f"the program's result holds a dict keyed {HANDLE_KEY!r}; "
                               "return a bool, a number or a string")
        else:
            result = Execution("ok", value=clean_value(msg.get("value")))  # plain data: no handles decoded
        result.stdout = clean_text(stdout[: self.settings.max_stdout_bytes + 32], keep_newlines=True)
        return result


def _holds_handle(value: Any, depth: int = 0) -> bool:
    """True when plain data ``value`` holds a dict keyed by ``HANDLE_KEY`` (anywhere)."""
    if depth > 40:
        return True
    if type(value) is dict:
        return HANDLE_KEY in value or any(_holds_handle(v, depth + 1) for v in value.values())
    if type(value) is list:
        return any(_holds_handle(v, depth + 1) for v in value)
    return False


def _from_exit(status: dict[str, Any], session: _Session) -> Execution:
    """The outcome of a child that ended without a report, from its exit status."""
    sig, code = status.get("signal"), status.get("code")
    cpu_limit = float(int(session.settings.cpu_s + 0.999) + 1)  # the RLIMIT_CPU the child set
    if sig in (signal.SIGKILL, signal.SIGXCPU) and float(status.get("cpu_s") or 0.0) >= cpu_limit - 0.25:
        found = _PROGRAM_FRAME.search(str(status.get("dump") or ""))
        line = int(found.group(1)) if found else None
        return session.fail("timeout", f"the program used more than {session.settings.cpu_s:g} s of CPU "
                            "time (cpu_s) inside one operation and was stopped; look for a huge "
                            "computation such as 10 ** 10 ** 8", line)
    if sig == signal.SIGKILL:
        return session.fail("memory", "the program was killed by the system, probably for memory")
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return session.fail("error", f"the program crashed ({name})")
    if code == CONFINEMENT_FAILED:
        return session.fail("error", "the sandbox could not confine the program's process (a layer "
                            "that worked at start-up failed); see sandbox.capabilities()")
    if status.get("error"):
        return session.fail("error", f"the sandbox lost track of the program's process ({status['error']})")
    return session.fail("error", f"the sandboxed process exited unexpectedly (code {code})")


def _serve(session: _Session, sock: socket.socket) -> Execution | None:
    """``session.serve`` that never raises: a failure of the channel becomes an error Execution."""
    try:
        return session.serve(sock)
    except OSError as exc:
        log.debug("sandbox channel failed: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - nothing a child sends may make run() raise
        log.exception("sandbox: serving the program failed")
        return session.fail("error", f"the sandbox could not serve the program ({type(exc).__name__})")


def run(source: str, image_patch: Any, *, timeout_s: float = 30.0, cpu_s: float = DEFAULT_CPU_S,
        call_budget: int = 200, cost_budget: float = DEFAULT_COST_BUDGET, memory_mb: int = 512,
        max_output_bytes: int = 64 * 1024, max_stdout_bytes: int = 16 * 1024,
        zygote: ChildSource | None = None) -> Execution:
    """Run ``source`` (which defines ``execute_command(image_patch)``) in the sandbox.

    ``timeout_s`` bounds the whole program in wall-clock time, API calls included; ``cpu_s`` the
    program's own CPU time; ``call_budget`` the number of API calls and ``cost_budget`` their
    cost; ``memory_mb`` is the address space the program may add; results, API replies and
    arguments above ``max_output_bytes`` of JSON are refused with a message that says so.
    Returns an :class:`Execution`; raises :class:`SandboxError` only when the sandbox itself
    cannot start a process (never for anything the program does).
    """
    started = time.monotonic()
    settings = _Settings(float(timeout_s), float(cpu_s), int(call_budget), float(cost_budget),
                         int(memory_mb), int(max_output_bytes), int(max_stdout_bytes))
    session = _Session(source if isinstance(source, str) else "", image_patch, settings,
                       started + settings.timeout_s)
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        return _finished(session.fail("error", "the program must be a string of at most "
                                      f"{MAX_SOURCE_CHARS} characters"), session, started)
    zyg = zygote or default_zygote()
    outcome = _one_child(session, zyg)
    if isinstance(outcome, dict) and outcome.get("error") and session.untouched:
        outcome = _one_child(session, zyg)  # its zygote died before the child began: once more
    result = outcome if isinstance(outcome, Execution) else _from_exit(outcome, session)
    return _finished(result, session, started)


def _one_child(session: _Session, zygote: ChildSource) -> Execution | dict[str, Any]:
    """Run the session's program in one child: its report, or (when it ended without one) its
    exit status from the zygote."""
    pid, host_end = zygote.spawn(warm_compiler=session.cached_code is None)
    result: Execution | None = None
    try:
        result = _serve(session, host_end)
    finally:
        host_end.close()
        if result is not None:
            zygote.release(pid)
    return result if result is not None else zygote.finish(pid, kill=False)


def _finished(result: Execution, session: _Session, started: float) -> Execution:
    result.calls = session.calls
    result.cost = session.meter.spent
    result.patches = session.handles[1:]
    result.elapsed_s = time.monotonic() - started
    if result.error is not None:
        result.error = clean_text(result.error)
    return result


def capabilities(zygote: Zygote | None = None) -> dict[str, Any]:
    """What confinement this machine gives programs (starts the zygote if needed).

    ``seccomp``, ``landlock``, ``unprivileged_user`` and ``proc_isolated`` (a confined child cannot
    read another process's ``/proc/<pid>/environ``) are booleans, each with a ``*_reason`` when False.
    """
    hello = (zygote or default_zygote()).ensure_started()
    return {"restricted_python": True, "process_isolation": True, "rlimits": True,
            "seccomp": bool(hello.get("seccomp")), "seccomp_reason": hello.get("seccomp_reason", ""),
            "landlock": bool(hello.get("landlock")), "landlock_reason": hello.get("landlock_reason", ""),
            "landlock_abi": hello.get("landlock_abi", 0),
            "unprivileged_user": bool(hello.get("user")), "unprivileged_user_reason": hello.get("user_reason", ""),
            "proc_isolated": bool(hello.get("proc")), "proc_isolated_reason": hello.get("proc_reason", ""),
            "zygote_pid": hello.get("pid")}


__all__ = ["Execution", "STATUSES", "run", "capabilities", "SandboxError"]
