"""Issue 12, item 6: a compromised child cannot crash the host's ``sandbox.run``.

A review sent a 60,000-deep JSON array from the child and ``sandbox.run`` raised RecursionError.
Here a thread plays a child that escaped every other layer and talks to the real host code
through a real socket (``HostileZygote`` stands in for the zygote): whatever it sends, ``run``
returns an ``Execution`` with a clear message and never raises.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Callable

import pytest

from graft_vqa import sandbox
from graft_vqa.sandbox.wire import WireError, decode_msg, recv_msg, send_msg
from tests.test_sandbox_fakes import FakePatch, program as P

Child = Callable[[socket.socket], None]


class HostileZygote:
    """Spawns a thread running ``behaviour(sock)`` on the child's end of the channel."""

    def __init__(self, behaviour: Child) -> None:
        self.behaviour = behaviour
        self.threads: list[threading.Thread] = []

    def spawn(self, warm_compiler: bool = False) -> tuple[int, socket.socket]:
        host_end, sock = socket.socketpair()

        def main() -> None:
            with sock:
                try:
                    recv_msg(sock, 1 << 22)  # the init message
                    self.behaviour(sock)
                except (OSError, WireError):
                    pass

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        self.threads.append(thread)
        return 10 ** 6 + len(self.threads), host_end

    def release(self, pid: int) -> None:
        pass

    def finish(self, pid: int, kill: bool) -> dict:
        return {"code": 0, "signal": None, "cpu_s": 0.0, "dump": ""}


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def sends(*chunks: bytes, then_wait: float = 0.0) -> Child:
    def behaviour(sock: socket.socket) -> None:
        for chunk in chunks:
            sock.sendall(chunk)
        time.sleep(then_wait)
    return behaviour


def done(**fields: object) -> bytes:
    return frame(json.dumps({"op": "done", **fields}).encode())


DEEP = b'{"op":"done","status":"ok","value":' + b"[" * 60000 + b"]" * 60000 + b"}"

CASES = [
    ("deep-array", sends(frame(DEEP)), "error", "invalid message"),
    ("deep-top-level", sends(frame(b"[" * 60000 + b"]" * 60000)), "error", "invalid message"),
    ("deep-in-call-args", sends(frame(b'{"op":"call","name":"count","handle":0,"args":'
                                      + b"[" * 5000 + b"]" * 5000 + b"}")), "error", "invalid message"),
    ("huge-length", sends(struct.pack(">I", 2 ** 31)), "error", "sent a message of"),
    ("truncated", sends(struct.pack(">I", 100) + b'{"op":'), "error", "exited unexpectedly"),
    ("half-header", sends(b"\x00\x00"), "error", "exited unexpectedly"),
    ("not-utf8", sends(frame(b'{"op":"done","status":"ok","value":"\xff\xfe"}')), "error", "invalid message"),
    ("not-json", sends(frame(b"{op: done}")), "error", "invalid message"),
    ("not-an-object", sends(frame(b"[1, 2, 3]")), "error", "invalid message"),
    ("unknown-op", sends(frame(b'{"op":"shell","cmd":"id"}')), "refused", "unknown request"),
    ("unknown-status", sends(done(status="pwned")), "error", "unknown status"),
    ("status-not-a-string", sends(done(status=["ok"])), "error", "unknown status"),
    ("error-not-a-string", sends(done(status="error", error={"x": 1})), "error", "error"),
    ("call-non-api", sends(frame(b'{"op":"call","name":"secret","handle":0}')), "refused", "not part of"),
    ("call-dunder", sends(frame(b'{"op":"call","name":"__class__","handle":0}')), "refused", "not part of"),
    ("call-huge-handle", sends(frame(b'{"op":"call","name":"count","handle":' + b"9" * 400 + b',"args":["car"]}')),
     "refused", "unknown ImagePatch handle"),
    ("call-bool-handle", sends(frame(b'{"op":"call","name":"count","handle":true,"args":["car"]}')),
     "refused", "not part of"),
    ("call-args-not-a-list", sends(frame(b'{"op":"call","name":"count","handle":0,"args":{"a":1}}')),
     "refused", "bad arguments"),
    ("call-forged-handle-arg", sends(frame(b'{"op":"call","name":"left_of","handle":0,"args":[{"$patch":7}]}')),
     "refused", "unknown ImagePatch handle"),
    ("trickle", sends(struct.pack(">I", 50), *[b" "] * 3, then_wait=30.0), "timeout", "timeout_s"),
    ("silent", sends(b"", then_wait=30.0), "timeout", "timeout_s"),
]


@pytest.mark.parametrize("behaviour, status, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_child_gets_an_execution_never_an_exception(behaviour: Child, status: str, message: str) -> None:
    FakePatch.secret_calls = 0
    result = sandbox.run(P("return 1"), FakePatch(), timeout_s=1.0, zygote=HostileZygote(behaviour))
    assert isinstance(result, sandbox.Execution)
    assert (result.status, message in (result.error or "")) == (status, True), (result.status, result.error)
    assert result.elapsed_s < 15.0  # the 1 s wall clock, not the trickle or the 30 s silence
    assert FakePatch.secret_calls == 0


@pytest.mark.parametrize("value", [{"$patch": 0}, {"x": [{"$patch": 0}]}, [[{"$patch": 0, "y": 1}]]])
def test_a_handle_in_a_hostile_result_is_an_error_never_a_host_object(value: object) -> None:
    result = sandbox.run(P("return 1"), FakePatch(), zygote=HostileZygote(sends(done(status="ok", value=value))))
    assert result.status == "error" and result.value is None and "'$patch'" in result.error


def test_strings_from_a_hostile_child_are_cleaned() -> None:
    result = sandbox.run(P("return 1"), FakePatch(), zygote=HostileZygote(sends(
        done(status="error", error="\x1b[2K\rrefused: fake \ud800", stdout="ok\x1b]0;title\x07\n"))))
    assert result.status == "error"
    assert "\x1b" not in result.error and "\ud800" not in result.error and "\\x1b[2K\\r" in result.error
    assert result.stdout == "ok\\x1b]0;title\\x07\n"
    json.dumps(result.error).encode("utf-8")  # no lone surrogate left


def test_a_flood_of_calls_stops_at_the_call_budget() -> None:
    def flood(sock: socket.socket) -> None:
        for _ in range(100):
            send_msg(sock, {"op": "call", "name": "count", "handle": 0, "args": ["car"]})
            recv_msg(sock, 1 << 20)

    result = sandbox.run(P("return 1"), FakePatch(), call_budget=20, zygote=HostileZygote(flood))
    assert result.status == "error" and "call_budget" in result.error and result.calls == 21


def test_decode_msg_refuses_deep_documents_without_parsing_them() -> None:
    for body in (b"[" * 100000, b'{"a":' * 50000, b'"' + b"[" * 10 + b'"'):
        if body.startswith(b'"'):
            with pytest.raises(Exception, match="not a JSON object"):
                decode_msg(body)
            continue
        with pytest.raises(Exception, match="nested deeper"):
            decode_msg(body)
    assert decode_msg(b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\\\"[[["}') == {"s": "[" * 40 + '\\"[[['}


def test_a_hostile_child_cannot_plant_code_in_the_cache_after_a_call() -> None:
    from graft_vqa.sandbox import host

    source = P("return 'planted?'")
    host.CODE_CACHE.put(source, "")

    def plant(sock: socket.socket) -> None:
        send_msg(sock, {"op": "call", "name": "count", "handle": 0, "args": ["car"]})
        recv_msg(sock, 1 << 20)
        send_msg(sock, {"op": "compiled", "code": "cGxhbnRlZA=="})
        send_msg(sock, {"op": "done", "status": "ok", "value": 1})

    result = sandbox.run(source, FakePatch(), zygote=HostileZygote(plant))
    assert result.status == "refused" and "unknown request" in result.error
    assert not host.CODE_CACHE.get(source)
