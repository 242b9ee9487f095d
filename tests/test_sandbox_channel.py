"""The sandbox's channel, confinement and process machinery, tested below the program level."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graft_vqa import sandbox
from graft_vqa.sandbox.confine import Seccomp
from graft_vqa.sandbox.wire import (HANDLE_KEY, WireError, from_plain, quote_line, recv_msg,
                                    send_msg, to_plain)
from tests.test_sandbox_fakes import OBJECTS, FakePatch, program as P


def _in_child(fn) -> int:
    """Run ``fn()`` in a forked process; return its exit code (fn's int result)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_messages_round_trip_and_oversize_is_refused() -> None:
    a, b = socket.socketpair()
    with a, b:
        send_msg(a, {"op": "call", "args": [1, 2.5, "x", None, True, {"k": [1]}]})
        assert recv_msg(b, 1000) == {"op": "call", "args": [1, 2.5, "x", None, True, {"k": [1]}]}
        send_msg(a, {"big": "x" * 5000})
        with pytest.raises(WireError, match="exceeds the limit"):
            recv_msg(b, 1000)


def test_to_plain_refuses_objects_cycles_and_oversize() -> None:
    assert to_plain((1, {"a": {2, 1}})) == [1, {"a": [1, 2]}]
    with pytest.raises(WireError, match="not plain data"):
        to_plain(object())
    loop: list = []
    loop.append(loop)
    with pytest.raises(WireError, match="nested deeper"):
        to_plain(loop)
    with pytest.raises(WireError, match="larger than 100 bytes"):
        to_plain("x" * 200, max_bytes=100)
    with pytest.raises(WireError, match="not a string"):
        to_plain({3: 1})


def test_handles_decode_to_host_objects_and_forged_ones_fail() -> None:
    table = ["root", "child"]

    def decode(h: int) -> str:
        if not 0 <= h < len(table):
            raise WireError("unknown handle")
        return table[h]

    assert from_plain([{HANDLE_KEY: 1}, {"n": {HANDLE_KEY: 0}}], decode) == ["child", {"n": "root"}]
    with pytest.raises(WireError):
        from_plain({HANDLE_KEY: 7}, decode)
    with pytest.raises(WireError, match="malformed"):
        from_plain({HANDLE_KEY: "0"}, decode)


def test_quote_line() -> None:
    src = "def f():\n    x = 1\n    return x.y\n"
    assert quote_line(src, 3, "boom") == "line 3: `return x.y`: boom"
    assert quote_line(src, None, "boom") == "boom"


RLIMIT_CHECK = """
import resource, sys
from graft_vqa.sandbox.confine import Limits, apply_limits
apply_limits(Limits(memory_mb=64, cpu_s=3, max_open_files=16))
checks = [
    resource.getrlimit(resource.RLIMIT_CPU)[0] == 3,
    resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 0,
    resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 16,
    resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY,
]
try:
    bytearray(200 << 20)
    checks.append(False)
except MemoryError:
    checks.append(True)
sys.exit(0 if all(checks) else 1)
"""


def test_rlimits_are_applied_in_a_child() -> None:
    # A fresh interpreter, like the zygote's children (forking this test process would inherit
    # whatever the rest of the suite loaded, torch's threads and mappings included).
    out = subprocess.run([sys.executable, "-c", RLIMIT_CHECK], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()


def test_seccomp_blocks_sockets_processes_and_file_writes(tmp_path) -> None:
    caps = sandbox.capabilities()
    filt = Seccomp()
    assert caps["seccomp"] == filt.available or caps["seccomp_reason"]
    if not filt.available:  # degraded machine: the reason must be reported, never silent
        assert filt.reason and caps["seccomp"] is False and caps["seccomp_reason"]
        return
    target = tmp_path / "written"

    def child() -> int:
        if not filt.load():
            return 2
        denied = 0
        for attempt in (lambda: socket.socket(), lambda: os.fork(),
                        lambda: open(target, "w"), lambda: os.execv("/bin/true", ["true"])):
            try:
                attempt()
            except PermissionError:
                denied += 1
        with open(__file__) as fh:  # reading stays possible
            fh.read(10)
        return 0 if denied == 4 else 1

    assert _in_child(child) == 0
    assert not target.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_zygote_restarts_after_it_dies() -> None:
    zyg = sandbox.Zygote()
    try:
        first = sandbox.run(P("return image_patch.count('car')"), FakePatch(), zygote=zyg)
        assert (first.status, first.value) == ("ok", len(OBJECTS["car"]))
        pid = sandbox.capabilities(zyg)["zygote_pid"]
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while _state(pid) not in ("Z", "gone"):  # dead (a zombie until the host reaps it)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        again = sandbox.run(P("return image_patch.count('tree')"), FakePatch(), zygote=zyg)
        assert (again.status, again.value) == ("ok", len(OBJECTS["tree"]))
        assert sandbox.capabilities(zyg)["zygote_pid"] != pid
    finally:
        zyg.close()


def test_a_program_started_as_its_zygote_dies_still_gets_its_answer() -> None:
    zyg = sandbox.Zygote()
    try:
        for i in range(4):
            pid = sandbox.capabilities(zyg)["zygote_pid"]
            os.kill(pid, 9)  # no wait: the spare child may still be alive, dying, or dead
            result = sandbox.run(P(f"return {i} + 1"), FakePatch(), zygote=zyg)
            assert (result.status, result.value) == ("ok", i + 1), result.error
    finally:
        zyg.close()


def test_a_waiting_child_holds_only_its_channel_and_dump_pipe() -> None:
    zyg = sandbox.Zygote()
    try:
        zpid = sandbox.capabilities(zyg)["zygote_pid"]
        ctrl_inode = os.readlink(f"/proc/{zpid}/fd/{_ctrl_fd(zpid)}")
        pid, host_end = zyg.spawn()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/wchan").read_text() != "unix_stream_read_generic":  # confined, waiting
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with host_end:
            fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert fds[0] == fds[1] == fds[2] == "/dev/null", fds  # nothing it prints reaches a terminal
        rest = sorted(target.split(":")[0] for fd, target in fds.items() if fd > 2)
        assert rest == ["pipe", "socket"], fds  # the dump pipe and its channel
        assert ctrl_inode not in fds.values()  # not the zygote's control socket
        zyg.release(pid)
    finally:
        zyg.close()


def _ctrl_fd(zygote_pid: int) -> str:
    """The zygote's control socket: the fd its command line names."""
    return Path(f"/proc/{zygote_pid}/cmdline").read_bytes().split(b"\0")[-2].decode()


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_a_forked_host_starts_its_own_zygote_and_leaves_the_parents_alone() -> None:
    zyg = sandbox.Zygote()
    try:
        assert sandbox.run(P("return 1"), FakePatch(), zygote=zyg).value == 1  # a spare is held now
        parent_zygote = sandbox.capabilities(zyg)["zygote_pid"]
        zyg.finish(-1, kill=False)  # any request reads the reply that brought the spare
        parents = {_fd_target(zyg._ctrl.fileno()), _fd_target(zyg._spare[1].fileno())}  # control, spare

        def forked() -> int:
            result = sandbox.run(P("return 2"), FakePatch(), zygote=zyg)
            own = sandbox.capabilities(zyg)["zygote_pid"]
            kept = parents & {_fd_target(int(fd)) for fd in os.listdir("/proc/self/fd")}
            zyg.close()
            return 0 if (result.value, own != parent_zygote, kept) == (2, True, set()) else 1

        assert _in_child(forked) == 0
        for i in range(3):  # the parent's zygote, spare and pending replies are untouched
            assert sandbox.run(P(f"return {i}"), FakePatch(), zygote=zyg).value == i
        assert sandbox.capabilities(zyg)["zygote_pid"] == parent_zygote
    finally:
        zyg.close()


def test_concurrent_runs_keep_their_own_state() -> None:
    names = ["car", "tree", "pool", "car", "tree", "pool"]
    results: dict[int, object] = {}

    def work(i: int) -> None:
        src = P(f"out = []\nfor k in range(200):\n    out.append(k)\nreturn [image_patch.count('{names[i]}'), len(out)]")
        results[i] = sandbox.run(src, FakePatch())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i, name in enumerate(names):
        assert results[i].status == "ok" and results[i].value == [len(OBJECTS[name]), 200]
