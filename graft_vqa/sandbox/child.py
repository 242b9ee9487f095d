"""The sandboxed child: confine itself, compile the program restricted, run it against a proxy.

One child runs one program, then exits (fresh state every time). It never sees the real
``ImagePatch``: the program gets an ``ImagePatch`` *proxy* whose API calls cross to the host as
JSON messages (see ``wire``). Everything the child reports is a ``done`` message
``{"op": "done", "status": ..., "value"|"error": ..., "line": ...}``; the host quotes the line.

The program's own CPU time is limited (``cpu_s``; waiting for the host costs none): at the limit
``SIGPROF`` makes the child report a timeout with the line it was on. At the same time
``SIGVTALRM`` makes ``faulthandler`` write the program's stack to the zygote's dump pipe (from C,
without waiting for the interpreter), so when the program is stuck inside one long C operation
(``10 ** 10 ** 8``) and the kernel kills it about a second later (``RLIMIT_CPU``), the host still
learns the line.

This module imports only the standard library and RestrictedPython: the zygote loads it.
"""
from __future__ import annotations

import base64
import faulthandler
import marshal
import math
import mmap
import os
import signal
import socket
import sys
import types
from typing import Any

from .confine import Confinement, Limits, apply_limits, confine_self
from .guards import PrintSink, build_globals, program_line
from .policy import PROGRAM_FILENAME, compile_program
from .wire import (HANDLE_KEY, ReservedKey, TooLarge, WireError, decode_msg, encode_msg, from_plain,
                   recv_msg, to_plain)

MAX_INIT_BYTES = 4 << 20
"""Largest init message (program source plus settings) the child accepts."""

RECURSION_LIMIT = 400
"""Python recursion limit inside the child."""

MAX_CACHED_CODE_BYTES = 256 * 1024
"""Largest marshalled program a child offers the host's code cache."""

BALLAST_BYTES = 1 << 20
"""Address space a child reserves (untouched, so it costs no page) before its program runs, and
gives back when the program runs out of memory, so the report can still be encoded and sent."""

MSG_OVERHEAD = 16 * 1024
"""Room for a message's own fields on top of its value (``max_output_bytes``)."""


def report_limit(max_output_bytes: int, max_stdout_bytes: int) -> int:
    """Largest ``done`` message: the value, the printed text (up to 12 bytes a character once
    JSON-escaped) and the message's own fields. The host reads no longer message."""
    return max_output_bytes + 12 * max_stdout_bytes + MSG_OVERHEAD


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


def _refuse_patch_result(obj: Any) -> Any:
    if type(obj) is ImagePatch:
        raise WireError(f"the program returned an ImagePatch; {_RETURN_PLAIN}")
    return NotImplemented


class _HostLink:
    """The child's end of the channel: API calls, refusals and the final report."""

    def __init__(self, sock: socket.socket, init: dict[str, Any]) -> None:
        self.sock = sock
        self.methods = frozenset(init["methods"])
        self.properties = frozenset(init["properties"])
        self.max_bytes = int(init["max_output_bytes"])
        self.report_bytes = report_limit(self.max_bytes, int(init["max_stdout_bytes"]))
        self.cpu_s = float(init["cpu_s"])
        self.busy = False  # inside a channel exchange: a timer signal must wait
        self.timed_out = False

    def finish(self, outcome: dict[str, Any]) -> None:
        """Send the final report and exit at once (nothing the program holds can intervene)."""
        outcome["op"] = "done"
        self.busy = True
        try:
            data = encode_msg(outcome)
            if len(data) - 4 > self.report_bytes:
                raise TooLarge(len(data) - 4, self.report_bytes)
        except TooLarge as exc:
            data = encode_msg({"op": "done", "status": "error", "line": None,
                               "error": f"the result is too large ({exc.sizes()})"})
        except (ValueError, TypeError, MemoryError, RecursionError):
            data = encode_msg({"op": "done", "status": "error", "line": None,
                               "error": "the program's report could not be encoded"})
        try:
            self.sock.sendall(data)
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

    def _request(self, op: str, handle: int, name: str, args: list, kwargs: dict) -> bytes:
        """The encoded call; a catchable error when the arguments are not plain data or too large."""
        try:
            plain_args = to_plain(args, self._encode, self.max_bytes, reserve_handles=True)
            plain_kwargs = to_plain(kwargs, self._encode, self.max_bytes, reserve_handles=True)
        except ReservedKey as exc:
            return self.deny(f"arguments of {name}(): {exc}")
        except TooLarge as exc:
            raise ValueError(f"the arguments of {name}() are too large ({exc.sizes()})") from None
        except WireError as exc:
            raise TypeError(f"arguments of {name}() must be plain data: {exc}") from None
        data = encode_msg({"op": op, "handle": handle, "name": name, "args": plain_args,
                           "kwargs": plain_kwargs, "line": program_line()})
        if len(data) - 4 > self.max_bytes + MSG_OVERHEAD:
            size = TooLarge(len(data) - 4 - MSG_OVERHEAD, self.max_bytes)
            raise ValueError(f"the arguments of {name}() are too large ({size.sizes()})")
        return data

    def call(self, op: str, handle: int, name: str, args: list, kwargs: dict) -> Any:
        data = self._request(op, handle, name, args, kwargs)
        self.busy = True
        try:
            self.sock.sendall(data)
            reply = recv_msg(self.sock, self.max_bytes + MSG_OVERHEAD)
        finally:
            self.busy = False
        if self.timed_out:
            self.on_cpu_limit(None, None)
        if not reply.get("ok"):
            raise ImagePatchError(str(reply.get("error", "the API call failed")))
        return from_plain(reply.get("value"), ImagePatch)

    def on_cpu_limit(self, signum: Any, frame: Any) -> None:
        """SIGPROF handler: the program used up its own CPU time; report the line it was on."""
        if self.busy:
            self.timed_out = True
            return
        self.finish({"status": "timeout", "line": program_line(),
                     "error": f"the program used more than {self.cpu_s:g} s of CPU time (cpu_s) and "
                              "was stopped; look for a loop that never ends or a huge computation"})


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


_RETURN_PLAIN = ("return a bool, a number or a string (for example len(patches), patch.area_m2 "
                 "or patch.exists('car'))")


def _result(link: _HostLink, value: Any) -> dict[str, Any]:
    if type(value) in (list, tuple) and any(type(v) is ImagePatch for v in value):
        return {"status": "error", "line": None,
                "error": f"the program returned a list of ImagePatch objects; {_RETURN_PLAIN}"}
    try:
        return {"status": "ok", "value": to_plain(value, _refuse_patch_result, link.max_bytes,
                                                   reserve_handles=True)}
    except TooLarge as exc:
        return {"status": "error", "line": None,
                "error": f"the result is too large ({exc.sizes()}); return a bool, a number "
                         "or a short string"}
    except WireError as exc:
        return {"status": "error", "line": None, "error": f"the program's result: {exc}"}


def _code(link: _HostLink, init: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The program's code object: unmarshalled from the host's cache of this very source, or
    compiled restricted here and sent to the host (before any program code runs, so a program
    cannot tamper with what is cached) for the next run of the same source."""
    cached = init.get("code")
    if isinstance(cached, str):
        try:
            code = marshal.loads(base64.b64decode(cached))
            if type(code) is types.CodeType:
                return code, None
        except (ValueError, TypeError, EOFError):
            pass  # compile it afresh
    code, message, line, refused = compile_program(init["source"])
    if code is None:
        return None, {"status": "refused" if refused else "error", "error": message, "line": line}
    try:
        text = _marshalled(code)
        if text is not None:
            link.sock.sendall(encode_msg({"op": "compiled", "code": text}))
    except (ValueError, OSError):
        pass
    return code, None


def _marshalled(code: types.CodeType) -> str | None:
    """``code`` as the host's code cache keeps it (marshal, base64), or None when it is too large."""
    data = marshal.dumps(code)
    return base64.b64encode(data).decode() if len(data) <= MAX_CACHED_CODE_BYTES else None


def _execute(link: _HostLink, init: dict[str, Any], sink: PrintSink, ballast: mmap.mmap) -> dict[str, Any]:
    code, failed = _code(link, init)
    if failed is not None:
        return failed
    glb = build_globals(ImagePatch, link.proxy_attr, link.deny, sink)
    try:
        exec(code, glb)  # noqa: S102 - restricted code under guards, in a confined child
        func = glb.get("execute_command")
        if not callable(func):
            return {"status": "error", "line": None,
                    "error": "the program must define `def execute_command(image_patch):`"}
        return _result(link, func(ImagePatch(0)))
    except MemoryError as exc:
        ballast.close()
        return {"status": "memory", "line": _failing_line(exc),
                "error": "the program ran out of memory (memory_mb)"}
    except RecursionError as exc:
        return {"status": "error", "line": _failing_line(exc),
                "error": "RecursionError: recursion too deep"}
    except BaseException as exc:  # noqa: BLE001 - every program failure becomes a report
        return {"status": "error", "line": _failing_line(exc), "error": _describe(exc)}


WARM_UP = """
import math

class Tally:
    def __init__(self):
        self.n = 0

def execute_command(image_patch):
    counts = {}
    tally = Tally()
    for name in ["a", "b", "a"]:
        counts[name] = counts.get(name, 0) + 1
        tally.n += 1
    areas = sorted([a * 1.5 for a in range(5)], key=lambda a: -a)
    text = f"{len(areas)} items, {math.floor(sum(areas))} m2, " + "{:.1f}".format(areas[0])
    return {"count": tally.n, "best": max(areas), "text": text, "ok": all(a >= 0 for a in areas)}
"""
"""A program each child runs while it waits for its real one: the pages that running a program
touches are copied from the zygote then, not on the program's clock."""

_WARM_UP_CODE = compile_program(WARM_UP)[0]


def _warm_up(compiler: bool) -> None:
    """Run ``WARM_UP`` against nothing and pass its result through the channel's codec; with
    ``compiler``, first compile it here as a new program is compiled (else the zygote's compile is
    used): a new program's compile then touches no page for the first time either."""
    try:
        code = _WARM_UP_CODE
        if compiler:
            code = compile_program(WARM_UP)[0]
            _marshalled(code)
        glb = build_globals(ImagePatch, lambda proxy, name: None, lambda message: None, PrintSink(64))
        exec(code, glb)  # noqa: S102 - our own fixed program, restricted like any other
        value = glb["execute_command"](ImagePatch(0))
        decode_msg(encode_msg({"op": "done", "status": "ok", "value": to_plain(value), "line": program_line()})[4:])
    except Exception:  # noqa: BLE001 - warming up is an optimisation; the real run reports its own errors
        pass


def child_main(sock: socket.socket, conf: Confinement, dump_fd: int, parent: int, base_bytes: int,
               warm_compiler: bool = False) -> None:
    """Entry point of a forked child: confine, warm up, wait for a program, run it, report, exit.

    The host asks the zygote for each child ahead of time: it confines itself at once, runs
    ``WARM_UP``, then waits on ``sock`` (its end of the channel; the host holds the other) for the
    init message of the program it will run. ``dump_fd`` is the write end of the zygote's dump
    pipe, ``parent`` the zygote's pid and ``base_bytes`` the zygote's address space (the
    program's ``memory_mb`` comes on top). ``warm_compiler``: warm up the compiler too (the host
    asks for it after a program it had not seen, as an LLM's programs are).
    """
    confine_self(conf, None, parent)
    _warm_up(warm_compiler)
    ballast = mmap.mmap(-1, BALLAST_BYTES)
    sys.setrecursionlimit(RECURSION_LIMIT)
    # Not chained to SIGPROF: chaining re-raises the signal, and seccomp denies tgkill.
    faulthandler.register(signal.SIGVTALRM, file=dump_fd, all_threads=False, chain=False)
    try:
        init = recv_msg(sock, MAX_INIT_BYTES)
        link = _HostLink(sock, init)
    except (OSError, WireError, KeyError, TypeError, ValueError):
        os._exit(3)
    cpu_s = max(0.05, link.cpu_s)
    apply_limits(Limits(memory_mb=int(init["memory_mb"]), cpu_s=math.ceil(cpu_s) + 1, base_bytes=base_bytes))
    signal.signal(signal.SIGPROF, link.on_cpu_limit)
    signal.setitimer(signal.ITIMER_VIRTUAL, cpu_s)
    signal.setitimer(signal.ITIMER_PROF, cpu_s)
    sink = PrintSink(int(init["max_stdout_bytes"]))
    outcome = _execute(link, init, sink, ballast)
    outcome["stdout"] = sink.text()
    link.finish(outcome)
