"""Issue 12, item 7: the confined child below the language layer, tested for real.

A security review found that a confined child could read ``/proc/<host pid>/environ`` (the host
runs as root here and on CI) and send signals with ``tgkill``. These tests confine a fresh
interpreter exactly as the zygote's children are confined (``confine.confine_self`` after
``confine.probe``), play a compromised child that escaped the language layer, and check that a
victim process's environment, memory and life stay out of reach. Where a system does not allow
a layer, the test checks that the sandbox says so instead.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graft_vqa import sandbox
from graft_vqa.sandbox import host, process
from graft_vqa.sandbox.confine import SANDBOX_UID
from tests.test_sandbox_fakes import FakePatch, program

PACKAGE_DIR = str(Path(sandbox.__file__).resolve().parents[1])
VICTIM_SECRET = "victim-secret-0e5b7c"

COMPROMISED_CHILD = r"""
import ctypes, ctypes.util, errno, json, os, signal, sys, types
pkg = types.ModuleType("graft_vqa"); pkg.__path__ = [sys.argv[1]]; sys.modules["graft_vqa"] = pkg
from graft_vqa.sandbox.confine import Confinement, Limits, confine_self, probe

victim = int(sys.argv[2])
NAMES = ("kill", "tgkill", "tkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
         "pidfd_send_signal", "ptrace", "process_vm_readv", "process_vm_writev")
try:  # system call numbers, resolved before confinement (afterwards no library can be opened)
    seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    numbers = {n: seccomp.seccomp_syscall_resolve_name(n.encode()) for n in NAMES}
except OSError:
    numbers = {}
conf = Confinement()
if sys.argv[3] == "landlock-only":
    conf.switch_user = False
elif sys.argv[3] == "user-only":
    conf.landlock.close()
report = probe(conf, os.getpid())
confine_self(conf, Limits(memory_mb=256, cpu_s=30), os.getppid())
out = {"report": report, "uid": os.getuid(), "euid": os.geteuid()}

def read(path):
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096)
        return "read:" + data.decode("latin-1")
    except OSError as exc:
        return "denied:" + errno.errorcode.get(exc.errno, str(exc.errno))

out["environ"] = read(f"/proc/{victim}/environ")
out["mem"] = read(f"/proc/{victim}/mem")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
info = ctypes.create_string_buffer(128)  # siginfo_t, zeroed
iov = (ctypes.c_void_p * 2)(ctypes.addressof(info), 8)
calls = {
    "kill": lambda n: libc.syscall(n, victim, signal.SIGTERM),
    "tgkill": lambda n: libc.syscall(n, victim, victim, signal.SIGTERM),
    "tkill": lambda n: libc.syscall(n, victim, signal.SIGTERM),
    "rt_sigqueueinfo": lambda n: libc.syscall(n, victim, signal.SIGTERM, info),
    "rt_tgsigqueueinfo": lambda n: libc.syscall(n, victim, victim, signal.SIGTERM, info),
    "pidfd_open": lambda n: libc.syscall(n, victim, 0),
    "pidfd_send_signal": lambda n: libc.syscall(n, 0, signal.SIGTERM, None, 0),
    "ptrace": lambda n: libc.syscall(n, 16, victim, None, None),  # PTRACE_ATTACH
    "process_vm_readv": lambda n: libc.syscall(n, victim, iov, 1, iov, 1, 0),
    "process_vm_writev": lambda n: libc.syscall(n, victim, iov, 1, iov, 1, 0),
}
out["syscalls"] = {}
for name, call in calls.items():
    if numbers.get(name, -1) < 0:
        continue
    ctypes.set_errno(0)
    result = call(numbers[name])
    out["syscalls"][name] = [int(result), errno.errorcode.get(ctypes.get_errno(), "0")]
print(json.dumps(out))
"""


@pytest.fixture()
def victim():
    """A process whose environment holds a secret, like the host's API keys."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "GRAFT_HOST_SECRET": VICTIM_SECRET}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)
    deadline = time.monotonic() + 10
    while VICTIM_SECRET not in Path(f"/proc/{proc.pid}/environ").read_bytes().decode("latin-1"):
        assert time.monotonic() < deadline, "the victim did not start"
        time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait()


def _compromised_child(victim_pid: int, layers: str = "all") -> dict:
    out = subprocess.run([sys.executable, "-I", "-c", COMPROMISED_CHILD, PACKAGE_DIR, str(victim_pid), layers],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_compromised_child_cannot_read_or_signal_another_process(victim: subprocess.Popen) -> None:
    # This process can read the victim's environment (as root, or as the same user): the secret
    # is really there for a child to steal.
    assert VICTIM_SECRET in Path(f"/proc/{victim.pid}/environ").read_bytes().decode("latin-1")
    out = _compromised_child(victim.pid)
    report = out["report"]
    if report["proc"]:
        assert out["environ"].startswith("denied:"), out["environ"]
        assert out["mem"].startswith("denied:"), out["mem"]
    else:  # a system without any isolating layer: the probe must say so, with a reason
        assert report["proc_reason"]
    assert VICTIM_SECRET not in json.dumps(out) or not report["proc"]
    if report["seccomp"]:
        for name, (result, err) in out["syscalls"].items():
            assert (result, err) == (-1, "EPERM"), (name, result, err)
        assert {"tgkill", "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "ptrace",
                "process_vm_readv", "process_vm_writev"} <= set(out["syscalls"])
    else:
        assert report["seccomp_reason"]
    assert victim.poll() is None  # no signal reached it


@pytest.mark.parametrize("layers", ["landlock-only", "user-only"])
def test_each_isolating_layer_alone_keeps_the_environment_out_of_reach(victim: subprocess.Popen,
                                                                        layers: str) -> None:
    out = _compromised_child(victim.pid, layers)
    report = out["report"]
    expected = report["landlock"] if layers == "landlock-only" else os.geteuid() == 0
    assert report["proc"] == expected, report
    if expected:
        assert out["environ"].startswith("denied:") and out["mem"].startswith("denied:"), out
    else:
        assert report["proc_reason"] and VICTIM_SECRET in out["environ"]  # the gap is real and reported


def test_as_root_the_child_runs_as_an_unprivileged_user(victim: subprocess.Popen) -> None:
    out = _compromised_child(victim.pid)
    if os.geteuid() == 0:
        assert out["report"]["user"], out["report"]["user_reason"]
        assert out["uid"] == out["euid"] == SANDBOX_UID
    else:
        assert out["uid"] == os.geteuid() and out["report"]["user_reason"]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_a_real_child_of_the_zygote_is_confined_while_it_runs() -> None:
    zygote = sandbox.Zygote()
    try:
        caps = sandbox.capabilities(zygote)
        pid, host_end = zygote.spawn()
        session = host._Session(program("while True:\n    pass"), FakePatch(),
                                host._Settings(30.0, 5.0, 200, 1e9, 256, 65536, 16384), deadline=1e12)
        host.send_msg(host_end, session.init_message())
        deadline = time.monotonic() + 20
        while _status(pid).get("Seccomp", "0").strip() == "0" and caps["seccomp"]:
            assert time.monotonic() < deadline, "the child never loaded its seccomp filter"
            time.sleep(0.01)
        status = _status(pid)
        assert status["NoNewPrivs"].strip() == "1"
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        if caps["unprivileged_user"]:
            assert status["Uid"].split()[:3] == [str(SANDBOX_UID)] * 3
        if caps["seccomp"]:
            assert status["Seccomp"].strip() == "2"
        if os.geteuid() == 0:  # as root, every layer this kernel has must be on
            assert caps["unprivileged_user"] and caps["proc_isolated"]
        host_end.close()
    finally:
        zygote.finish(pid, kill=True)
        zygote.close()


def test_missing_layers_are_warned_about_once(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(process, "_warned_layers", set())
    monkeypatch.setattr(process, "_protect_host", lambda: False)
    hello = {"seccomp": False, "seccomp_reason": "libseccomp unusable: test", "landlock": False,
             "landlock_reason": "the kernel has no Landlock (test)", "user": False,
             "user_reason": "not root (test)", "proc": False, "proc_reason": "nothing isolates (test)"}
    with caplog.at_level(logging.WARNING, logger="graft_vqa.sandbox.process"):
        first = process.warn_missing_layers(dict(hello))
        again = process.warn_missing_layers(dict(hello))
    assert first == ["seccomp", "landlock", "user", "proc"] and again == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert any("libseccomp unusable: test" in m for m in messages)
    assert any("/proc" in m and "nothing isolates (test)" in m for m in messages)


def test_without_root_but_with_landlock_the_user_layer_is_not_worth_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_warned_layers", set())
    hello = {"seccomp": True, "landlock": True, "user": False, "user_reason": "not root", "proc": True}
    assert process.warn_missing_layers(hello) == []


def test_programs_still_run_fully_confined() -> None:
    result = sandbox.run(program("import math\nreturn [image_patch.count('car'), math.floor(2.5), "
                                 "'{:.1f}'.format(2.25)]"), FakePatch())
    assert (result.status, result.value) == ("ok", [3, 2, "2.2"])
