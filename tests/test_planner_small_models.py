"""What makes small LLMs usable, through the real ``openai`` client against a scripted server on 127.0.0.1:
noun and answer-kind checks that re-ask, self-consistency voting, the rule-planner fallback,
structured output, and prompts trimmed to the question."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.core.errors import PlannerError
from graft_vqa.planner import OpenAIPlanner, plan_with_feedback
from graft_vqa.planner.checks import expected_kind, form_problem, noun_problem, question_nouns
from tests.openai_server import Reply, ScriptedOpenAIServer

from .synthetic import RectScorer

IMAGE = np.zeros((200, 200, 3), dtype=np.uint8)
RECTS = {"road": [(10, 20, 0, 200)], "building": [(50, 60, 50, 60), (100, 110, 100, 110), (150, 160, 20, 30)]}


def program(body: str) -> str:
    return f"```python\ndef execute_command(image_patch):\n    {body}\n```"


def planner_for(server: ScriptedOpenAIServer, **options) -> OpenAIPlanner:
    return OpenAIPlanner(base_url=server.base_url, model="small", api_key="sk-test", timeout=5.0, max_retries=0,
                         sleep=lambda s: None, **options)


def engine_for(planner: OpenAIPlanner, tmp_path, **options) -> Engine:
    config = EngineConfig(gsd_m=1.0, find=FindConfig(refine="none", threshold=0.25),
                          cache_dir=str(tmp_path / "programs"), **options)
    return Engine(scorer=RectScorer(RECTS), planner=planner, config=config)


# --- nouns ------------------------------------------------------------------------------------
def test_a_noun_the_question_does_not_name_is_fed_back_with_the_right_names(tmp_path):
    script = [program('return len(image_patch.find("house"))'), program('return len(image_patch.find("building"))')]
    with ScriptedOpenAIServer(script) as server:
        answer = engine_for(planner_for(server), tmp_path).ask(IMAGE, "How many buildings are there?")
    assert (answer.value, answer.error) == (3, None)
    retry = server.user_messages()[1]
    assert '"house", which the question does not name' in retry and 'find(): "building"' in retry


def test_an_attribute_inside_the_name_is_explained():
    problem = noun_problem("Is there a small road?", 'def execute_command(image_patch):\n'
                                                    '    return image_patch.exists("small road")\n')
    assert problem is not None and problem.hard
    assert '"small road"' in problem.message and 'patch.size == "small"' in problem.message
    assert noun_problem("Is there a small road?", 'def execute_command(image_patch):\n'
                                                  '    return any(p.size == "small" for p in image_patch.find("roads"))\n'
                        ) is None  # plural is the same noun


def test_nouns_of_questions_the_grammar_does_not_parse_are_only_suspected(tmp_path):
    question = "Which vehicles are parked beside the depot?"
    assert question_nouns(question) is None
    script = [program('return image_patch.count("car")')] * 2  # the model insists
    with ScriptedOpenAIServer(script) as server:
        found = plan_with_feedback(planner_for(server), question, max_attempts=2)
    assert found.source.count('"car"') == 1 and len(server.requests) == 2
    assert "may not answer the question" in found.meta["warnings"][0] and '"car"' in found.meta["warnings"][0]


def test_an_attribute_or_relation_the_question_does_not_ask_for_is_fed_back(tmp_path):
    script = [program('return len([p for p in image_patch.find("building") if p.size == "large"])'),
              program('return len(image_patch.find("building"))')]
    with ScriptedOpenAIServer(script) as server:
        answer = engine_for(planner_for(server), tmp_path).ask(IMAGE, "What is the number of buildings?")
    assert answer.value == 3 and 'size "large", which the question does not ask for' in server.user_messages()[1]


@pytest.mark.parametrize("question,body,expected", [
    ("How many small roads are there?", 'return len(image_patch.find("road"))', 'patch.size == "small"'),
    ("How many roads at the top of a grass area are there?",
     'return len(image_patch.filter_related(image_patch.find("road"), "is_below", image_patch.find("grass area")))',
     '"is_above"'),
    ("Is there a circular forest?", 'return any(p.shape == "circular" for p in image_patch.find("forest"))', None),
    ("Which vehicles are parked?", 'return [p for p in image_patch.find("car") if p.size == "large"]', None),
])
def test_the_program_asks_what_the_question_asks(question, body, expected):
    problem = form_problem(question, f"def execute_command(image_patch):\n    {body}\n")
    assert (problem is None) if expected is None else (expected in problem.message)


# --- answer kinds ----------------------------------------------------------------------------
@pytest.mark.parametrize("question,kind", [
    ("Is there a road?", "bool"), ("Are there more roads than buildings?", "bool"),
    ("Is the number of roads equal to the number of buildings?", "bool"), ("How many roads are there?", "count"),
    ("What is the amount of roads?", "count"), ("What is the area covered by roads?", "area_m2"),
    ("Is it a rural or an urban area?", "text"), ("Paint me a sunset", None),
])
def test_expected_kind_follows_the_question(question, kind):
    assert expected_kind(question) == kind


def test_a_count_for_a_yes_no_question_is_fed_back(tmp_path):
    script = [program('return len(image_patch.find("road"))'), program('return image_patch.exists("road")')]
    with ScriptedOpenAIServer(script) as server:
        answer = engine_for(planner_for(server), tmp_path).ask(IMAGE, "Is there a road?")
    assert (answer.value, answer.kind) == (True, "bool")
    assert "asks for a bool" in server.user_messages()[1] and "'1'" in server.user_messages()[1]


def test_a_re_ask_is_sampled_so_a_small_model_does_not_repeat_itself(tmp_path):
    script = [program('return len(image_patch.find("road"))'), program('return image_patch.exists("road")')]
    with ScriptedOpenAIServer(script) as server:
        engine_for(planner_for(server, retry_temperature=0.6), tmp_path).ask(IMAGE, "Is there a road?")
    bodies = [r["json"] for r in server.requests]
    assert bodies[0]["temperature"] == 0.0 and "seed" not in bodies[0]  # the first program: greedy
    assert (bodies[1]["temperature"], bodies[1]["seed"]) == (0.6, 0)  # the re-ask: sampled, reproducibly


def test_an_unusable_return_value_is_fed_back(tmp_path):
    script = [program('return image_patch.find("road")'), program('return len(image_patch.find("road"))')]
    with ScriptedOpenAIServer(script) as server:
        answer = engine_for(planner_for(server), tmp_path).ask(IMAGE, "How many roads are there?")
    assert (answer.value, answer.error) == (1, None)
    assert "returned a list" in server.user_messages()[1]


# --- self-consistency ------------------------------------------------------------------------
def test_samples_vote_and_failed_programs_do_not(tmp_path):
    script = [program('return len(image_patch.find("building")) == 1'),  # greedy: "no" (3 buildings)
              program('return len(image_patch.find("building")) > 2'),  # sample 1: "yes"
              program('return image_patch.find("building")[7] is None'),  # sample 2 fails ...
              program('return len(image_patch.find("building")) > 0')]  # ... and its repair says "yes"
    with ScriptedOpenAIServer(script) as server:
        planner = planner_for(server, sample_temperature=0.8)
        answer = engine_for(planner, tmp_path, planner_samples=3, planner_attempts=2).ask(
            IMAGE, "Are there more than two buildings?")
    assert (answer.value, answer.error) == (True, None)
    assert "> 2" in answer.program  # the first program of the winning answer
    bodies = [r["json"] for r in server.requests]
    assert bodies[0]["temperature"] == 0.0 and "seed" not in bodies[0]
    assert [(b["temperature"], b["seed"]) for b in bodies[1:]] == [(0.8, 1), (0.8, 2), (0.8, 2)]
    assert "IndexError" in server.user_messages()[3]


def test_sampling_stops_once_the_majority_is_certain(tmp_path):
    same = program('return len(image_patch.find("road"))')
    with ScriptedOpenAIServer([same, same, same]) as server:
        answer = engine_for(planner_for(server), tmp_path, planner_samples=3).ask(IMAGE, "How many roads are there?")
    assert answer.value == 1 and len(server.requests) == 2  # two of three agree: the third cannot change it


def test_one_sample_is_one_greedy_request(tmp_path):
    with ScriptedOpenAIServer([program('return len(image_patch.find("road"))')]) as server:
        engine_for(planner_for(server), tmp_path).ask(IMAGE, "How many roads are there?")
    assert len(server.requests) == 1 and server.requests[0]["json"]["temperature"] == 0.0


# --- fallback to the rule planner ------------------------------------------------------------
def test_when_every_attempt_fails_the_rule_program_answers_and_says_so(tmp_path):
    with ScriptedOpenAIServer(["no code at all"] * 2) as server:
        answer = engine_for(planner_for(server), tmp_path, planner_attempts=2, planner_fallback=True).ask(
            IMAGE, "How many buildings are there?")
    assert (answer.value, answer.error) == (3, None)
    assert any("rules planner's program instead" in w and "openai:small" in w for w in answer.warnings)
    assert 'image_patch.find("building")' in answer.program


def test_no_fallback_when_the_rules_do_not_understand_or_it_is_off(tmp_path):
    with ScriptedOpenAIServer(["no code"] * 4) as server:
        planner = planner_for(server)
        unknown = engine_for(planner, tmp_path, planner_attempts=2, planner_fallback=True).ask(
            IMAGE, "Which building is the tallest?")
        off = engine_for(planner, tmp_path, planner_attempts=2).ask(IMAGE, "How many buildings are there?")
    assert unknown.status == off.status == "planner_error" and not unknown.warnings


# --- structured output -----------------------------------------------------------------------
def test_auto_structured_output_settles_on_the_format_the_server_takes():
    reply = json.dumps({"program": 'def execute_command(image_patch):\n    return image_patch.count("road")\n'})
    script = [Reply(status=422), reply, reply]  # json_schema refused, json_object taken
    with ScriptedOpenAIServer(script) as server:
        planner = planner_for(server, structured="auto")
        first = planner.plan("How many roads are there?")
        planner.plan("How many buildings are there?")
    formats = [r["json"].get("response_format", {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"] and planner.structured == "json_object"
    assert server.requests[1]["json"]["response_format"]["schema"]["required"] == ["program"]
    assert first.source.strip().endswith('return image_patch.count("road")')
    assert '"program"' in server.requests[0]["json"]["messages"][0]["content"]  # the prompt asks for JSON


def test_a_server_without_structured_output_gets_plain_requests_and_code_replies_still_work():
    script = [Reply(status=400), Reply(status=400), program('return image_patch.count("road")')]
    with ScriptedOpenAIServer(script) as server:
        planner = planner_for(server, structured="auto")
        found = planner.plan("How many roads are there?")
    assert "response_format" not in server.requests[2]["json"] and planner.structured == "off"
    assert "count(\"road\")" in found.source


def test_a_fixed_structured_mode_that_the_server_refuses_is_a_clear_error():
    with ScriptedOpenAIServer([Reply(status=400)]) as server:
        with pytest.raises(PlannerError, match="rejected the request"):
            planner_for(server, structured="json_schema").plan("How many roads are there?")


# --- prompts that fit -----------------------------------------------------------------------
def test_fewshots_are_chosen_by_similarity_and_fit_the_context():
    with ScriptedOpenAIServer([]) as server:
        planner = planner_for(server, fewshots=2)
        system = planner.system_prompt("Are there less water areas than roads?")
        assert system.count("Question: ") == 2 and "Are there less cars than trees?" in system
        everything = planner_for(server).system_prompt("Are there less water areas than roads?")
        tight = planner_for(server, context_tokens=2000, max_tokens=200).system_prompt("How many roads are there?")
    assert everything.count("Question: ") >= 10
    assert 0 < tight.count("Question: ") < everything.count("Question: ") and len(tight) / 3.5 + 200 <= 2000
    assert "### `crop(" in planner_for(server).system_prompt("How many roads are in the left half?")


def test_settings_that_change_the_prompt_change_the_cache_key():
    with ScriptedOpenAIServer([]) as server:
        versions = {planner_for(server, **o).prompt_version for o in
                    ({}, {"fewshots": 3}, {"structured": "auto"}, {"temperature": 0.2}, {"spec": "full"})}
    assert len(versions) == 5


def test_the_command_line_sets_the_small_model_options():
    import argparse

    from graft_vqa.interfaces.options import add_engine_options, engine_config, make_planner

    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    args = parser.parse_args(["--planner", "openai", "--base-url", "http://127.0.0.1:9/v1", "--structured", "auto",
                              "--fewshots", "4", "--llm-timeout", "300", "--planner-samples", "3",
                              "--planner-fallback"])
    planner = make_planner(args)
    assert (planner.structured, planner.fewshots, planner.timeout) == ("auto", 4, 300.0)
    config = engine_config(args)
    assert (config.planner_samples, config.planner_fallback) == (3, True)
