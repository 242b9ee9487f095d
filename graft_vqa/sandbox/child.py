"""The sandboxed child: confine itself, compile the program restricted, run it against a proxy.

One child runs one program, then exits (fresh state every time). It never sees the real
``ImagePatch``: the program gets an ``ImagePatch`` *proxy* whose API calls cross to the host as
JSON messages (see ``wire``). Everything the child reports is a ``done`` message
``{"op": "done", "status": ..., "value"|"error": ..., "line": ...}``; the host quotes the line.

This module imports only the standard library and RestrictedPython: the zygote loads it.
"""
from __future__ import annotations

import gc
import math
import os
import signal
import socket
import sys
from typing import Any

from .confine import Limits, Seccomp, apply_limits, kill_with_parent
from .guards import PROGRAM_FILENAME, PrintSink, build_globals, compile_program, program_line
from .wire import HANDLE_KEY, WireError, from_plain, recv_msg, send_msg, to_plain

MAX_INIT_BYTES = 4 << 20
"""Largest init message (program source plus settings) the child accepts."""

RECURSION_LIMIT = 400
"""Python recursion limit inside the child."""


class ImagePatchError(Exception):
    """An API call failed on the host; the program may catch it like any exception."""


class ImagePatch:
    """The proxy a program sees in place of the real ``ImagePatch``: a handle and nothing else."""

    __slots__ = ("_handle",)

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __repr__(self) -> str:
        return f"ImagePatch(#{self._handle})"

    def __eq__(self, other: object) -> bool:
        return type(other) is ImagePatch and other._handle == self._handle

    def __hash__(self) -> int:
        return hash(("ImagePatch", self._handle))


class _ApiMethod:
    """A bound API method of a proxy; calling it asks the host."""

    __slots__ = ("_link", "_handle", "_name")

    def __init__(self, link: "_HostLink", handle: int, name: str) -> None:
        self._link, self._handle, self._name = link, handle, name

    def __repr__(self) -> str:
        return f"<ImagePatch.{self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call("call", self._handle, self._name, list(args), kwargs)


class _HostLink:
    """The child's end of the channel: API calls, refusals and the final report."""

    def __init__(self, sock: socket.socket, init: dict[str, Any]) -> None:
        self.sock = sock
        self.methods = frozenset(init["methods"])
        self.properties = frozenset(init["properties"])
        self.max_bytes = int(init["max_output_bytes"])
        self.busy = False  # inside a channel exchange: a timer signal must wait
        self.timed_out = False

    def finish(self, outcome: dict[str, Any]) -> None:
        """Send the final report and exit at once (nothing the program holds can intervene)."""
        outcome["op"] = "done"
        self.busy = True
        try:
            send_msg(self.sock, outcome)
        except (ValueError, TypeError, MemoryError):
            send_msg(self.sock, {"op": "done", "status": "error", "line": None,
                                 "error": "the program's report could not be encoded"})
        finally:
            os._exit(0)

    def deny(self, message: str) -> None:
        self.finish({"status": "refused", "error": f"refused: {message}", "line": program_line()})

    def proxy_attr(self, proxy: ImagePatch, name: str) -> Any:
        if name in self.methods:
            return _ApiMethod(self, proxy._handle, name)
        if name in self.properties:
            return self.call("get", proxy._handle, name, [], {})
        api = ", ".join(sorted(self.methods | self.properties))
        return self.deny(f"`{name}` is not part of the ImagePatch API (available: {api})")

    @staticmethod
    def _encode(obj: Any) -> Any:
        return {HANDLE_KEY: obj._handle} if type(obj) is ImagePatch else NotImplemented

    def call(self, op: str, handle: int, name: str, args: list, kwargs: dict) -> Any:
        try:
            plain_args = to_plain(args, self._encode, self.max_bytes)
            plain_kwargs = to_plain(kwargs, self._encode, self.max_bytes)
        except WireError as exc:
            raise TypeError(f"arguments of {name}() must be plain data: {exc}") from None
        self.busy = True
        paused = signal.setitimer(signal.ITIMER_REAL, 0)[0]  # API time is not the program's
        try:
            send_msg(self.sock, {"op": op, "handle": handle, "name": name, "args": plain_args,
                                 "kwargs": plain_kwargs, "line": program_line()})
            reply = recv_msg(self.sock, self.max_bytes + 65536)
        finally:
            self.busy = False
        if paused > 0:
            signal.setitimer(signal.ITIMER_REAL, paused)
        if self.timed_out:
            self.on_timer(None, None)
        if not reply.get("ok"):
            raise ImagePatchError(str(reply.get("error", "the API call failed")))
        return from_plain(reply.get("value"), ImagePatch)

    def on_timer(self, signum: Any, frame: Any) -> None:
        """SIGALRM handler: the program used up its time (API calls excluded); report where it was."""
        if self.busy:
            self.timed_out = True
            return
        self.finish({"status": "timeout", "error": "the program ran out of time (timeout_s)",
                     "line": program_line()})


def _failing_line(exc: BaseException) -> int | None:
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be shown is replaced
        text = ""
    text = text if len(text) <= 500 else text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _execute(link: _HostLink, init: dict[str, Any], sink: PrintSink) -> dict[str, Any]:
    code, message, line, refused = compile_program(init["source"])
    if code is None:
        return {"status": "refused" if refused else "error", "error": message, "line": line}
    glb = build_globals(ImagePatch, link.proxy_attr, link.deny, sink)
    ballast = bytearray(1 << 20)  # released on MemoryError so the report can still be sent
    try:
        exec(code, glb)  # noqa: S102 - restricted code under guards, in a confined child
        func = glb.get("execute_command")
        if not callable(func):
            return {"status": "error", "line": None,
                    "error": "the program must define `def execute_command(image_patch):`"}
        value = func(ImagePatch(0))
        return {"status": "ok", "value": to_plain(value, link._encode, link.max_bytes)}
    except MemoryError as exc:
        del ballast
        outcome = {"status": "memory", "line": _failing_line(exc),
                   "error": "the program ran out of memory (memory_mb)"}
    except RecursionError as exc:
        outcome = {"status": "error", "line": _failing_line(exc),
                   "error": "RecursionError: recursion too deep"}
    except WireError as exc:
        outcome = {"status": "error", "line": None, "error": f"the program's result: {exc}"}
    except BaseException as exc:  # noqa: BLE001 - every program failure becomes a report
        outcome = {"status": "error", "line": _failing_line(exc), "error": _describe(exc)}
    glb.clear()
    gc.collect()
    return outcome


def child_main(sock: socket.socket, seccomp: Seccomp) -> None:
    """Entry point of a forked child: read the init message, confine, run, report, exit."""
    kill_with_parent()
    try:
        init = recv_msg(sock, MAX_INIT_BYTES)
    except (OSError, WireError):
        os._exit(3)
    link = _HostLink(sock, init)
    timeout_s = float(init["timeout_s"])
    apply_limits(Limits(memory_mb=int(init["memory_mb"]), cpu_s=math.ceil(timeout_s) + 2))
    if init.get("seccomp", True):
        seccomp.load()
    sys.setrecursionlimit(RECURSION_LIMIT)
    signal.signal(signal.SIGALRM, link.on_timer)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    sink = PrintSink(int(init["max_stdout_bytes"]))
    outcome = _execute(link, init, sink)
    outcome["stdout"] = sink.text()
    link.finish(outcome)
