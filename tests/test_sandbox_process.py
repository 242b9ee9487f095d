"""The zygote process: a minimal environment for programs, and no socket leaked when spawning fails."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from graft_vqa import sandbox
from graft_vqa.core.errors import SandboxError
from graft_vqa.sandbox import host
from graft_vqa.sandbox.confine import Seccomp
from tests.test_sandbox_fakes import FakePatch, program

SECRET_ENV = {"OPENAI_API_KEY": "sk-test-4b1e9c", "GRAFT_TEST_SECRET": "hunter2-7a0d"}


def _environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` started with, read from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.fixture()
def fresh_zygote(monkeypatch: pytest.MonkeyPatch):
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    zygote = sandbox.Zygote()
    zygote.ensure_started()
    yield zygote
    zygote.close()


def test_the_zygote_and_its_children_do_not_inherit_host_secrets(fresh_zygote: sandbox.Zygote) -> None:
    assert all(os.environ[name] == value for name, value in SECRET_ENV.items())  # set in this process
    zygote_env = _environ(fresh_zygote.hello["pid"])
    pid, host_end = fresh_zygote.spawn()  # a child waiting for its program
    with host_end:
        child_env = _environ(pid)
    fresh_zygote.finish(pid, kill=True)
    for env in (zygote_env, child_env):
        leaked = set(env) - {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "LANGUAGE", "TZ", "LD_LIBRARY_PATH"}
        assert not leaked, leaked
        for value in SECRET_ENV.values():
            assert value not in "\0".join(f"{k}={v}" for k, v in env.items())
    assert zygote_env.get("PATH")


def test_a_zygote_with_the_minimal_environment_still_works(fresh_zygote: sandbox.Zygote) -> None:
    assert fresh_zygote.hello["seccomp"] == Seccomp().available  # libseccomp is still found
    result = sandbox.run(program("import math\nreturn [len(image_patch.find('car')), math.floor(2.5)]"),
                         FakePatch(), zygote=fresh_zygote)
    assert (result.status, result.value) == ("ok", [3, 2])


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_failed_spawn_says_so_and_leaks_no_socket(fresh_zygote: sandbox.Zygote,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before = _open_fds()
    stray, kept = socket.socketpair()
    replies = iter([({"error": "fork failed: EAGAIN"}, [os.dup(stray.fileno())])])
    stray.close()
    monkeypatch.setattr(fresh_zygote, "_receive", lambda: next(replies))
    monkeypatch.setattr(fresh_zygote, "_pending", 0)
    monkeypatch.setattr(fresh_zygote, "_spare", None)
    with pytest.raises(SandboxError, match="could not start a program: fork failed"):
        sandbox.run(program("return 1"), FakePatch(), zygote=fresh_zygote)
    kept.close()
    assert _open_fds() - before <= {str(fresh_zygote._ctrl.fileno())}  # the fd sent along was closed


def test_a_child_asked_for_ahead_that_did_not_start_is_asked_for_again(
        fresh_zygote: sandbox.Zygote, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = fresh_zygote._receive
    replies = iter([({"error": "no process for the program (EAGAIN)"}, [])])
    monkeypatch.setattr(fresh_zygote, "_receive", lambda: next(replies, None) or real())
    fresh_zygote._pending += 1  # a failed reply to a request sent ahead, before the real one
    with caplog.at_level("WARNING", logger="graft_vqa.sandbox.process"):
        result = sandbox.run(program("return 7"), FakePatch(), zygote=fresh_zygote)
    assert (result.status, result.value) == ("ok", 7)
    assert "did not start: the sandbox could not start a program: no process" in caplog.text


# --- children forked ahead, released and reaped; compiled programs cached ---------------------------


def _children_of(pid: int) -> dict[int, str]:
    """Child pid -> state letter (R, S, Z ...) of every child of process ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            out[int(entry.name)] = stat[0]
    return out


def test_a_child_waits_ahead_and_finished_children_are_reaped(fresh_zygote: sandbox.Zygote) -> None:
    zpid = fresh_zygote.hello["pid"]
    for i in range(12):
        result = sandbox.run(program(f"return {i}"), FakePatch(), zygote=fresh_zygote)
        assert (result.status, result.value) == ("ok", i)
    deadline = time.monotonic() + 20
    while True:
        fresh_zygote.finish(-1, kill=False)  # any request makes the zygote reap released children
        states = list(_children_of(zpid).values())
        if states.count("Z") == 0 and len(states) == 1:  # only the child forked ahead is left
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.05)


def test_a_child_that_died_while_waiting_is_replaced(fresh_zygote: sandbox.Zygote) -> None:
    zpid = fresh_zygote.hello["pid"]
    assert sandbox.run(program("return 1"), FakePatch(), zygote=fresh_zygote).value == 1
    deadline = time.monotonic() + 10
    while not [p for p, s in _children_of(zpid).items() if s != "Z"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    waiting = [pid for pid, state in _children_of(zpid).items() if state != "Z"]
    assert len(waiting) == 1
    os.kill(waiting[0], 9)  # the child waiting for the next program
    while _children_of(zpid).get(waiting[0], "Z") != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    result = sandbox.run(program("return image_patch.count('car')"), FakePatch(), zygote=fresh_zygote)
    assert (result.status, result.value) == ("ok", 3)


def test_the_next_child_warms_its_compiler_after_a_new_program_only(
        fresh_zygote: sandbox.Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict] = []
    real_send = fresh_zygote._send
    monkeypatch.setattr(fresh_zygote, "_send", lambda msg: (asked.append(msg), real_send(msg))[1])
    source = program(f"return {time.time_ns()}")  # new to the code cache
    for _ in range(2):
        assert sandbox.run(source, FakePatch(), zygote=fresh_zygote).status == "ok"
    ahead = [msg.get("compile") for msg in asked if msg.get("op") == "spawn"]
    assert ahead == [True, False]  # after the new program: warm the compiler; after the cached one: not


def test_a_compiled_program_is_cached_and_reused(fresh_zygote: sandbox.Zygote) -> None:
    source = program("n = 0\nfor p in image_patch.find('car'):\n    n += 1\nreturn f'{n:d} cars'")
    host.CODE_CACHE.put(source, "")  # make sure nothing usable is cached
    first = sandbox.run(source, FakePatch(), zygote=fresh_zygote)
    cached = host.CODE_CACHE.get(source)
    assert first.value == "3 cars" and cached
    again = sandbox.run(source, FakePatch(), zygote=fresh_zygote)
    assert (again.status, again.value) == ("ok", "3 cars")
    assert host.CODE_CACHE.get(program("x = (")) is None
    assert sandbox.run(program("x = ("), FakePatch(), zygote=fresh_zygote).status == "error"
    assert host.CODE_CACHE.get(program("x = (")) is None  # nothing is cached for a failed compile


def test_a_corrupt_cache_entry_is_compiled_afresh(fresh_zygote: sandbox.Zygote) -> None:
    source = program("return 'fresh'")
    host.CODE_CACHE.put(source, "bm90IG1hcnNoYWw=")  # base64 of bytes that are no marshalled code
    result = sandbox.run(source, FakePatch(), zygote=fresh_zygote)
    assert (result.status, result.value) == ("ok", "fresh")
