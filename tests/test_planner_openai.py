"""The LLM planner through the real ``openai`` client against a scripted HTTP server on 127.0.0.1."""
from __future__ import annotations

import multiprocessing
import socket
from importlib import resources

import pytest

from graft_vqa.core.errors import PlannerError
from graft_vqa.planner import OpenAIPlanner, ProgramCache, plan_cached, plan_with_feedback, validate_program
from tests.openai_server import Reply, ScriptedOpenAIServer

QUESTION = "How many residential buildings are there?"
GOOD = 'def execute_command(image_patch):\n    return len(image_patch.find("residential building"))\n'
FENCED_GOOD = f"Here is the program.\n```python\n{GOOD}```"
_SPEC_FILE = resources.files("api_spec").joinpath("image_patch_api.md")


@pytest.fixture
def api_spec() -> str:
    """The real generated API text when it exists, else a minimal stand-in."""
    if _SPEC_FILE.is_file():
        return _SPEC_FILE.read_text(encoding="utf-8")
    return "find(name) -> list[ImagePatch]: the objects called name.\nexists(name) -> bool.\n"


def make_planner(server: ScriptedOpenAIServer, api_spec: str, sleeps: list[float] | None = None,
                 **options) -> OpenAIPlanner:
    settings = dict(timeout=5.0, max_retries=3, backoff_s=0.01, max_backoff_s=0.5)
    settings.update(options)
    spec = None if _SPEC_FILE.is_file() else api_spec  # prefer the real loader path
    sink = sleeps if sleeps is not None else []
    return OpenAIPlanner(base_url=server.base_url, model="scripted-model", api_key="sk-test",
                         api_spec=spec, sleep=sink.append, **settings)


def test_question_api_spec_and_examples_land_in_the_request(api_spec):
    with ScriptedOpenAIServer([FENCED_GOOD]) as server:
        program = make_planner(server, api_spec).plan(QUESTION)
    assert program.source == GOOD and program.planner == "openai:scripted-model"
    validate_program(program.source)
    (request,) = server.requests
    body = request["json"]
    assert body["model"] == "scripted-model" and request["headers"]["authorization"] == "Bearer sk-test"
    system, user = body["messages"]
    assert system["role"] == "system" and "### `filter_related(" in system["content"]
    assert "### `crop(" not in system["content"]  # the core API only: the question needs no pixel geometry
    assert "Question: Is there a large water area?" in system["content"]  # a few-shot example
    assert user["role"] == "user" and QUESTION in user["content"]


def test_settings_come_from_the_environment_at_construction(monkeypatch, api_spec):
    with ScriptedOpenAIServer([FENCED_GOOD]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        monkeypatch.setenv("GRAFT_VQA_MODEL", "env-model")
        planner = OpenAIPlanner(api_spec=api_spec)
        monkeypatch.setenv("GRAFT_VQA_MODEL", "changed-later")
        planner.plan(QUESTION)
    assert server.requests[0]["json"]["model"] == "env-model"
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-from-env"


def test_missing_key_and_url_is_a_clear_error(monkeypatch, api_spec):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PlannerError, match="OPENAI_API_KEY"):
        OpenAIPlanner(api_spec=api_spec)


def test_server_errors_are_retried_with_exponential_backoff(api_spec):
    sleeps: list[float] = []
    with ScriptedOpenAIServer([Reply(status=500), Reply(status=503), FENCED_GOOD]) as server:
        program = make_planner(server, api_spec, sleeps).plan(QUESTION)
    assert program.source == GOOD and program.meta["http_tries"] == 3
    assert len(server.requests) == 3 and sleeps == [0.01, 0.02]


def test_rate_limit_honours_retry_after_capped(api_spec):
    sleeps: list[float] = []
    script = [Reply(status=429, headers={"Retry-After": "0.25"}),
              Reply(status=429, headers={"Retry-After": "120"}), FENCED_GOOD]
    with ScriptedOpenAIServer(script) as server:
        assert make_planner(server, api_spec, sleeps).plan(QUESTION).source == GOOD
    assert sleeps == [0.25, 0.5]


def test_timeouts_are_retried(api_spec):
    with ScriptedOpenAIServer([Reply(content=FENCED_GOOD, delay_s=1.0), FENCED_GOOD]) as server:
        program = make_planner(server, api_spec, timeout=0.3).plan(QUESTION)
    assert program.source == GOOD and program.meta["http_tries"] == 2


def test_retries_are_bounded_and_the_error_names_the_server(api_spec):
    with ScriptedOpenAIServer([Reply(status=500)] * 5) as server:
        with pytest.raises(PlannerError, match="gave up after 3 tries") as info:
            make_planner(server, api_spec, max_retries=2).plan(QUESTION)
    assert len(server.requests) == 3 and server.base_url in str(info.value)


def test_connection_refused_asks_whether_the_server_runs(api_spec):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    planner = OpenAIPlanner(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_spec=api_spec,
                            max_retries=1, backoff_s=0.0, sleep=lambda s: None)
    with pytest.raises(PlannerError, match=rf"is the server at http://127.0.0.1:{port}/v1 running\?"):
        planner.plan(QUESTION)


@pytest.mark.parametrize("status,hint", [(401, "OPENAI_API_KEY"), (404, "GRAFT_VQA_MODEL"), (400, "rejected")])
def test_client_errors_are_not_retried_and_say_what_to_do(api_spec, status, hint):
    with ScriptedOpenAIServer([Reply(status=status), FENCED_GOOD]) as server:
        with pytest.raises(PlannerError, match=hint):
            make_planner(server, api_spec).plan(QUESTION)
    assert len(server.requests) == 1


def test_a_lone_function_with_the_wrong_name_is_repaired(api_spec):
    reply = "```python\ndef count_buildings(image_patch):\n    return len(image_patch.find('building'))\n```"
    with ScriptedOpenAIServer([reply]) as server:
        program = make_planner(server, api_spec).plan(QUESTION)
    assert program.source.startswith("def execute_command(image_patch):")
    validate_program(program.source)


def _child(source: str, connection) -> None:
    class Patch:
        def find(self, name):
            return [object()] * {"residential building": 4}.get(name, 0)

    try:
        namespace: dict = {}
        exec(compile(source, "<program>", "exec"), namespace)
        connection.send((True, repr(namespace["execute_command"](Patch()))))
    except Exception as exc:  # the error goes back to the planner as feedback
        connection.send((False, f"{type(exc).__name__}: {exc}"))


def run_with_timeout(source: str, timeout_s: float = 3.0) -> tuple[bool, str | None]:
    """A minimal stand-in for the sandbox: run in a forked child, kill it after ``timeout_s``."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(source, send))
    process.start()
    process.join(timeout_s)
    if process.is_alive():
        process.kill()
        process.join()
        return False, f"timeout: the program ran longer than {timeout_s} s (endless loop?)"
    ok, detail = receive.recv() if receive.poll() else (False, "the program crashed")
    return ok, None if ok else detail


def test_bad_replies_are_fed_back_until_a_program_works(api_spec):
    script = [
        "I am not sure how to do that.",  # no code
        "```python\ndef a(p):\n    return 1\ndef b(p):\n    return 2\n```",  # wrong function names
        "```python\ndef execute_command(image_patch):\n    return len(image_patch.find('x')\n```",  # syntax
        "```python\ndef execute_command(image_patch):\n    while True:\n        pass\n    return 1\n```",
        "```python\ndef execute_command(image_patch):\n    return image_patch.count('x')\n```",  # runtime
        FENCED_GOOD,
    ]
    with ScriptedOpenAIServer(script) as server:
        program = plan_with_feedback(make_planner(server, api_spec), QUESTION, run=run_with_timeout,
                                     max_attempts=6, check_question=False)  # 'x' is no noun of the question
    assert program.source == GOOD and program.meta["attempts"] == 6
    users = server.user_messages()
    assert len(users) == 6 and all(QUESTION in text for text in users)
    assert "did not work" not in users[0]
    assert "I am not sure how to do that." in users[1] and "no Python code" in users[1]
    assert "none is named execute_command" in users[2]
    assert "syntax error" in users[3] and "return len(image_patch.find('x')" in users[3]
    assert "timeout" in users[4] and "while True" in users[4]
    assert "AttributeError" in users[5] and "count" in users[5]
    assert run_with_timeout(program.source) == (True, None)


def test_feedback_attempts_are_bounded(api_spec):
    with ScriptedOpenAIServer(["no code", "still no code", FENCED_GOOD]) as server:
        with pytest.raises(PlannerError, match="after 2 attempt") as info:
            plan_with_feedback(make_planner(server, api_spec), QUESTION, max_attempts=2)
    assert len(server.requests) == 2 and "no Python code" in str(info.value)


def test_programs_are_cached_on_disk_by_prompt_version(tmp_path, api_spec):
    cache = ProgramCache(tmp_path)
    with ScriptedOpenAIServer([FENCED_GOOD, FENCED_GOOD]) as server:
        first = plan_cached(make_planner(server, api_spec), QUESTION, cache)
        again = plan_cached(make_planner(server, api_spec), QUESTION.upper(), cache)
        assert len(server.requests) == 1 and again.meta["cached"] and again.source == first.source
        other_spec = OpenAIPlanner(base_url=server.base_url, model="scripted-model", api_key="k",
                                   api_spec=api_spec + "\nnew_method() -> int\n")
        assert other_spec.prompt_version != make_planner(server, api_spec).prompt_version
        plan_cached(other_spec, QUESTION, cache)
        assert len(server.requests) == 2
