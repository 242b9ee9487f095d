"""The zygote: a small process, holding no model, that forks one sandboxed child per program.

The host starts it (see ``process.Zygote``) with a ``SOCK_SEQPACKET`` control socket. One
packet is one JSON request; every request but ``release`` is answered by one JSON packet:

* ``{"op": "spawn", "compile": bool}``: fork a child that confines itself, warms up (its compiler
  too when ``compile``) and then waits for its program on a new channel socket; reply
  ``{"pid": pid}`` with the host's end of that channel attached (``SCM_RIGHTS``). The host asks
  for its next child while the current one runs, so a program's start waits neither for a fork
  nor for the zygote.
* ``{"op": "finish", "pid": pid, "kill": bool}``: (kill and) reap that child; reply
  ``{"pid": pid, "code": exit code or None, "signal": signal number or None, "cpu_s": CPU seconds
  the child used, "dump": the traceback the child wrote when its CPU time ran out, or ""}``.
* ``{"op": "release", "pid": pid}``: the host needs nothing more from that child (it reported, or
  it died while it waited): kill it and reap it later. No reply.

On start the zygote sends ``{"op": "hello", "pid": ..., **confine.probe(...)}``: which
confinement layers a throw-away child could really apply. A child keeps nothing of the zygote's
but what it needs: not the control socket, not the other children's pipes, and its standard
output and error lead to ``/dev/null``. When the control socket closes (the host exited), the
zygote kills its remaining children and exits.

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
from dataclasses import dataclass
from typing import Any

from .child import child_main
from .confine import Confinement, _address_space_bytes, probe

REAP_GRACE_S = 2.0
"""How long ``finish`` without ``kill`` waits for a child to exit before killing it."""

MAX_DUMP_BYTES = 4096
"""Most of a child's traceback dump passed back to the host."""


@dataclass
class _Child:
    pid: int
    dump: int  # read end of the child's dump pipe


class _Children:
    """The children alive: those handed to the host, and those released but not yet reaped."""

    def __init__(self, ctrl: socket.socket, conf: Confinement, base_bytes: int) -> None:
        self.ctrl, self.conf, self.base_bytes = ctrl, conf, base_bytes
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.running: dict[int, _Child] = {}
        self.released: set[int] = set()

    def spawn(self, warm_compiler: bool) -> tuple[dict[str, Any], socket.socket]:
        """Fork a child that confines itself, warms up and waits on a new channel; return the reply
        and the host's end of that channel."""
        host_end, child_end = socket.socketpair()
        dump_read, dump_write = os.pipe()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                host_end.close()
                os.close(dump_read)
                self._leave_zygote()
                child_main(child_end, self.conf, dump_write, zygote_pid, self.base_bytes, warm_compiler)
            finally:
                os._exit(4)
        child_end.close()
        os.close(dump_write)
        os.set_blocking(dump_read, False)
        self.running[pid] = _Child(pid, dump_read)
        return {"pid": pid}, host_end

    def _leave_zygote(self) -> None:
        """In a new child: drop what the zygote holds (the control socket, other children's
        pipes) and send standard output and error to /dev/null."""
        self.ctrl.close()
        for other in self.running.values():
            os.close(other.dump)
        os.dup2(self.devnull, 1)
        os.dup2(self.devnull, 2)
        os.close(self.devnull)

    def finish(self, pid: int, kill: bool) -> dict[str, Any]:
        child = self.running.pop(pid, None)
        if child is None:
            return {"pid": pid, "error": "not a child of this zygote"}
        if kill:
            self._kill(pid)
        deadline = time.monotonic() + REAP_GRACE_S
        while True:
            done, status, usage = os.wait4(pid, 0 if kill else os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                self._kill(pid)
                kill = True
            else:
                time.sleep(0.002)
        dump = _read_dump(child.dump)
        os.close(child.dump)
        return {"pid": pid, **_exit_status(status, usage), "dump": dump}

    def release(self, pid: int) -> None:
        child = self.running.pop(pid, None)
        if child is not None:
            self._kill(pid)
            self.released.add(pid)
            os.close(child.dump)

    def reap_released(self) -> None:
        for pid in list(self.released):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.released.discard(pid)

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def kill_all(self) -> None:
        for pid in [*self.running, *self.released]:
            self._kill(pid)


def _read_dump(fd: int) -> str:
    try:
        return os.read(fd, MAX_DUMP_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


def _exit_status(status: int, usage: Any) -> dict[str, Any]:
    cpu = round(float(usage.ru_utime + usage.ru_stime), 3)
    if os.WIFSIGNALED(status):
        return {"code": None, "signal": os.WTERMSIG(status), "cpu_s": cpu}
    return {"code": os.WEXITSTATUS(status), "signal": None, "cpu_s": cpu}


def _serve(ctrl: socket.socket, children: _Children) -> None:
    while True:
        data, fds, _, _ = socket.recv_fds(ctrl, 65536, 4)
        for fd in fds:  # no request carries a file descriptor
            os.close(fd)
        if not data:
            return
        msg = json.loads(data)
        op = msg.get("op")
        if op == "release":
            children.release(int(msg["pid"]))
        elif op == "spawn":
            try:
                reply, host_end = children.spawn(bool(msg.get("compile")))
            except OSError as exc:  # no fork, socket or pipe to be had: say so, keep serving
                ctrl.send(json.dumps({"error": f"no process for the program ({exc})"}).encode())
            else:
                with host_end:
                    socket.send_fds(ctrl, [json.dumps(reply).encode()], [host_end.fileno()])
        elif op == "finish":
            ctrl.send(json.dumps(children.finish(int(msg["pid"]), bool(msg.get("kill")))).encode())
        else:
            ctrl.send(json.dumps({"error": f"unknown op {op!r}"}).encode())
        children.reap_released()


def main(ctrl_fd: int) -> None:
    """Serve the host on the control socket ``ctrl_fd`` until it closes."""
    ctrl = socket.socket(fileno=ctrl_fd)
    conf = Confinement()
    report = probe(conf, os.getpid())
    ctrl.send(json.dumps({"op": "hello", "pid": os.getpid(), **report}).encode())
    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the children's collections (copy-on-write)
    children = _Children(ctrl, conf, _address_space_bytes())
    try:
        _serve(ctrl, children)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    finally:
        children.kill_all()
