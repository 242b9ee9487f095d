"""The zygote: a small process, holding no model, that forks one sandboxed child per program.

The host starts it (see ``process.Zygote``) with a ``SOCK_SEQPACKET`` control socket. One
packet is one JSON request, answered by one JSON packet:

* ``{"op": "spawn"}`` with the child's channel socket attached (``SCM_RIGHTS``):
  fork a child that runs ``child.child_main`` on it; reply ``{"pid": pid}``.
* ``{"op": "finish", "pid": pid, "kill": bool}``: (kill and) reap that child; reply
  ``{"pid": pid, "code": exit code or None, "signal": signal number or None}``.

On start it sends ``{"op": "hello", "pid": ..., "seccomp": bool, "reason": str}``, after checking
in a throw-away child that the seccomp filter really blocks ``socket()``. When the control
socket closes (the host exited), it kills its remaining children and exits.

Only the standard library and RestrictedPython are imported here (the host starts this module
without running ``graft_vqa/__init__``), so forking stays cheap.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import socket
import time
from typing import Any

from .child import child_main
from .confine import Seccomp

REAP_GRACE_S = 2.0
"""How long ``finish`` without ``kill`` waits for a child to exit before killing it."""


def _probe_seccomp(seccomp: Seccomp) -> tuple[bool, str]:
    if not seccomp.available:
        return False, seccomp.reason
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            if seccomp.load():
                try:
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                    code = 1
                except PermissionError:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    reasons = {0: "", 1: "the filter loaded but did not block socket()",
               2: "the kernel refused the seccomp filter"}
    return code == 0, reasons.get(code, f"probe failed with status {code}")


def _exit_status(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"code": None, "signal": os.WTERMSIG(status)}
    return {"code": os.WEXITSTATUS(status), "signal": None}


def _finish(pid: int, kill: bool, children: set[int]) -> dict[str, Any]:
    if pid not in children:
        return {"pid": pid, "error": "not a child of this zygote"}
    if kill:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + REAP_GRACE_S
    while True:
        done, status = os.waitpid(pid, 0 if kill else os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            kill = True
        else:
            time.sleep(0.002)
    children.discard(pid)
    return {"pid": pid, **_exit_status(status)}


def _spawn(ctrl: socket.socket, fds: list[int], seccomp: Seccomp) -> dict[str, Any]:
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return {"error": "spawn needs exactly one channel socket"}
    pid = os.fork()
    if pid == 0:
        try:
            ctrl.close()
            child_main(socket.socket(fileno=fds[0]), seccomp)
        finally:
            os._exit(4)
    os.close(fds[0])
    return {"pid": pid}


def main(ctrl_fd: int) -> None:
    """Serve the host on the control socket ``ctrl_fd`` until it closes."""
    ctrl = socket.socket(fileno=ctrl_fd)
    seccomp = Seccomp()
    ok, reason = _probe_seccomp(seccomp)
    ctrl.send(json.dumps({"op": "hello", "pid": os.getpid(), "seccomp": ok,
                          "reason": reason}).encode())
    children: set[int] = set()
    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the children's collections (copy-on-write)
    try:
        while True:
            data, fds, _, _ = socket.recv_fds(ctrl, 65536, 4)
            if not data:
                break
            msg = json.loads(data)
            if msg.get("op") == "spawn":
                reply = _spawn(ctrl, fds, seccomp)
                if "pid" in reply:
                    children.add(reply["pid"])
            elif msg.get("op") == "finish":
                reply = _finish(int(msg["pid"]), bool(msg.get("kill")), children)
            else:
                reply = {"error": f"unknown op {msg.get('op')!r}"}
            ctrl.send(json.dumps(reply).encode())
    except (OSError, ValueError):
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

