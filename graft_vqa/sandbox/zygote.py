"""The zygote: a small process, holding no model, that forks one sandboxed child per program.

The host starts it (see ``process.Zygote``) with a ``SOCK_SEQPACKET`` control socket. One
packet is one JSON request, answered by one JSON packet:

* ``{"op": "spawn"}`` with the child's channel socket attached (``SCM_RIGHTS``):
  fork a child that runs ``child.child_main`` on it; reply ``{"pid": pid}``.
* ``{"op": "finish", "pid": pid, "kill": bool}``: (kill and) reap that child; reply
  ``{"pid": pid, "code": exit code or None, "signal": signal number or None, "cpu_s": CPU seconds
  the child used, "dump": the traceback the child wrote when its CPU time ran out, or ""}``.

On start it sends ``{"op": "hello", "pid": ..., **confine.probe(...)}``: which confinement
layers a throw-away child could really apply. When the control socket closes (the host
exited), it kills its remaining children and exits.

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
from .confine import Confinement, _address_space_bytes, probe

REAP_GRACE_S = 2.0
"""How long ``finish`` without ``kill`` waits for a child to exit before killing it."""

MAX_DUMP_BYTES = 4096
"""Most of a child's traceback dump passed back to the host."""


class _Children:
    """The children alive, each with the read end of its dump pipe."""

    def __init__(self) -> None:
        self.dumps: dict[int, int] = {}  # pid -> read end of the child's dump pipe

    def add(self, pid: int, dump_fd: int) -> None:
        self.dumps[pid] = dump_fd

    def pop_dump(self, pid: int) -> str:
        fd = self.dumps.pop(pid, -1)
        if fd < 0:
            return ""
        try:
            return os.read(fd, MAX_DUMP_BYTES).decode("utf-8", "replace")
        except OSError:
            return ""
        finally:
            os.close(fd)

    def kill_all(self) -> None:
        for pid in list(self.dumps):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _exit_status(status: int, usage: Any) -> dict[str, Any]:
    cpu = round(float(usage.ru_utime + usage.ru_stime), 3)
    if os.WIFSIGNALED(status):
        return {"code": None, "signal": os.WTERMSIG(status), "cpu_s": cpu}
    return {"code": os.WEXITSTATUS(status), "signal": None, "cpu_s": cpu}


def _finish(pid: int, kill: bool, children: _Children) -> dict[str, Any]:
    if pid not in children.dumps:
        return {"pid": pid, "error": "not a child of this zygote"}
    if kill:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + REAP_GRACE_S
    while True:
        done, status, usage = os.wait4(pid, 0 if kill else os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            kill = True
        else:
            time.sleep(0.002)
    return {"pid": pid, **_exit_status(status, usage), "dump": children.pop_dump(pid)}


def _spawn(ctrl: socket.socket, fds: list[int], conf: Confinement, base_bytes: int,
           children: _Children) -> dict[str, Any]:
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return {"error": "spawn needs exactly one channel socket"}
    dump_read, dump_write = os.pipe()
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            ctrl.close()
            os.close(dump_read)
            for fd in children.dumps.values():  # siblings' pipes are none of this child's business
                os.close(fd)
            child_main(socket.socket(fileno=fds[0]), conf, dump_write, zygote_pid, base_bytes)
        finally:
            os._exit(4)
    os.close(fds[0])
    os.close(dump_write)
    os.set_blocking(dump_read, False)
    children.add(pid, dump_read)
    return {"pid": pid}


def main(ctrl_fd: int) -> None:
    """Serve the host on the control socket ``ctrl_fd`` until it closes."""
    ctrl = socket.socket(fileno=ctrl_fd)
    conf = Confinement()
    report = probe(conf, os.getpid())
    ctrl.send(json.dumps({"op": "hello", "pid": os.getpid(), **report}).encode())
    children = _Children()
    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the children's collections (copy-on-write)
    base_bytes = _address_space_bytes()
    try:
        while True:
            data, fds, _, _ = socket.recv_fds(ctrl, 65536, 4)
            if not data:
                break
            msg = json.loads(data)
            if msg.get("op") == "spawn":
                reply = _spawn(ctrl, fds, conf, base_bytes, children)
            elif msg.get("op") == "finish":
                reply = _finish(int(msg["pid"]), bool(msg.get("kill")), children)
            else:
                reply = {"error": f"unknown op {msg.get('op')!r}"}
            ctrl.send(json.dumps(reply).encode())
    except (OSError, ValueError):
        pass
    finally:
        children.kill_all()
