"""The zygote: a small process, holding no model, that forks one sandboxed child per program.

The host starts it (see ``process.Zygote``) with a ``SOCK_SEQPACKET`` control socket. One
packet is one JSON request; every request but ``release`` is answered by one JSON packet:

* ``{"op": "spawn"}`` with the child's channel socket attached (``SCM_RIGHTS``): hand the
  socket to a child that will run ``child.child_main`` on it; reply ``{"pid": pid}``.
* ``{"op": "finish", "pid": pid, "kill": bool}``: (kill and) reap that child; reply
  ``{"pid": pid, "code": exit code or None, "signal": signal number or None, "cpu_s": CPU seconds
  the child used, "dump": the traceback the child wrote when its CPU time ran out, or ""}``.
* ``{"op": "release", "pid": pid}``: the host needs nothing more from that child (it reported):
  kill it and reap it later. No reply.

Children are forked one ahead: the next child is forked, and confines itself, right after a
spawn is answered, so a program's start does not wait for a fork. On start the zygote sends
``{"op": "hello", "pid": ..., **confine.probe(...)}``: which confinement layers a throw-away
child could really apply. When the control socket closes (the host exited), it kills its
remaining children and exits.

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
    link: socket.socket | None  # the zygote's end of the socket the channel is handed over on
    dump: int  # read end of the child's dump pipe


class _Children:
    """The children alive: the one forked ahead, those running programs, those released."""

    def __init__(self, conf: Confinement, base_bytes: int) -> None:
        self.conf, self.base_bytes = conf, base_bytes
        self.ready: _Child | None = None
        self.running: dict[int, _Child] = {}
        self.released: set[int] = set()

    def fork(self) -> _Child:
        """Fork a child that confines itself and waits for its channel."""
        parent_link, child_link = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        dump_read, dump_write = os.pipe()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                parent_link.close()
                os.close(dump_read)
                self._close_others()
                child_main(child_link, self.conf, dump_write, zygote_pid, self.base_bytes)
            finally:
                os._exit(4)
        child_link.close()
        os.close(dump_write)
        os.set_blocking(dump_read, False)
        return _Child(pid, parent_link, dump_read)

    def _close_others(self) -> None:
        """In a new child: close what the zygote holds for other children (none of its business)."""
        for other in [self.ready, *self.running.values()]:
            if other is None:
                continue
            if other.link is not None:
                other.link.close()
            os.close(other.dump)

    def spawn(self, channel_fd: int) -> dict[str, Any]:
        """Hand ``channel_fd`` to the child forked ahead (or a new one); return the reply."""
        for _ in (0, 1):
            child, self.ready = self.ready or self.fork(), None
            try:
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    raise ChildProcessError("the child forked ahead has exited")
                assert child.link is not None
                socket.send_fds(child.link, [b"go"], [channel_fd])
            except OSError:  # that child died while it waited: forget it, take a new one
                self._kill(child.pid)
                self.released.add(child.pid)
                self._forget(child)
                continue
            child.link.close()
            child.link = None
            self.running[child.pid] = child
            return {"pid": child.pid}
        return {"error": "no child could take the program"}

    def fork_ahead(self) -> None:
        if self.ready is None:
            self.ready = self.fork()

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
        self._forget(child)
        return {"pid": pid, **_exit_status(status, usage), "dump": dump}

    def release(self, pid: int) -> None:
        child = self.running.pop(pid, None)
        if child is not None:
            self._kill(pid)
            self.released.add(pid)
            self._forget(child)

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

    @staticmethod
    def _forget(child: _Child) -> None:
        if child.link is not None:
            child.link.close()
            child.link = None
        os.close(child.dump)

    def kill_all(self) -> None:
        for pid in [*self.running, *([self.ready.pid] if self.ready else []), *self.released]:
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
        if not data:
            return
        msg = json.loads(data)
        op = msg.get("op")
        if op == "release":
            children.release(int(msg["pid"]))
        elif op == "spawn":
            if len(fds) == 1:
                reply = children.spawn(fds[0])
            else:
                reply = {"error": "spawn needs exactly one channel socket"}
            for fd in fds:
                os.close(fd)
            ctrl.send(json.dumps(reply).encode())
        elif op == "finish":
            ctrl.send(json.dumps(children.finish(int(msg["pid"]), bool(msg.get("kill")))).encode())
        else:
            ctrl.send(json.dumps({"error": f"unknown op {op!r}"}).encode())
        children.reap_released()
        children.fork_ahead()  # after the reply: the host does not wait for this fork


def main(ctrl_fd: int) -> None:
    """Serve the host on the control socket ``ctrl_fd`` until it closes."""
    ctrl = socket.socket(fileno=ctrl_fd)
    conf = Confinement()
    report = probe(conf, os.getpid())
    ctrl.send(json.dumps({"op": "hello", "pid": os.getpid(), **report}).encode())
    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the children's collections (copy-on-write)
    children = _Children(conf, _address_space_bytes())
    try:
        children.fork_ahead()
        _serve(ctrl, children)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    finally:
        children.kill_all()
