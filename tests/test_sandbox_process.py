"""The zygote process: a minimal environment for programs, and no socket leaked when spawning fails."""
from __future__ import annotations

import os
import socket
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
    host_end, child_end = socket.socketpair()
    try:
        pid = fresh_zygote.spawn(child_end.fileno())  # a child waiting for its program
        child_env = _environ(pid)
    finally:
        child_end.close()
        host_end.close()
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


class _BrokenZygote:
    """A zygote whose ``spawn`` fails, as when the zygote process cannot fork."""

    def spawn(self, channel_fd: int) -> int:
        raise SandboxError("spawn failed")


def test_no_socket_leaks_when_spawn_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[socket.socket] = []
    real_pair = socket.socketpair

    def recording_pair(*args: object) -> tuple[socket.socket, socket.socket]:
        pair = real_pair(*args)
        made.extend(pair)
        return pair

    monkeypatch.setattr(host.socket, "socketpair", recording_pair)
    with pytest.raises(SandboxError):
        sandbox.run(program("return 1"), FakePatch(), zygote=_BrokenZygote())  # type: ignore[arg-type]
    assert len(made) == 2
    assert [s.fileno() for s in made] == [-1, -1]  # both ends closed
