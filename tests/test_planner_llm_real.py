"""Opt-in: the LLM planner with a real local model (Qwen2.5-Coder-0.5B behind llama_cpp.server on 127.0.0.1).

Deselected by default (``-m "not llm"`` in pyproject's addopts); run with ``make test-llm`` or
``pytest -m llm`` after ``make llm-setup``. Missing pieces fail with what to run, never skip.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from graft_vqa import Engine
from graft_vqa.config import EngineConfig, FindConfig
from tests.llm_server import REPO, LlamaServer
from tests.scenes import EXPECTED_KIND, GSD_M, SceneScorer, parse_question, scene_for

pytestmark = [pytest.mark.llm, pytest.mark.timeout(1800)]  # a first prompt on a busy CPU takes minutes

_HOME_AT_IMPORT = os.environ.get("GRAFT_VQA_HOME")  # conftest points each test at a temporary home
QUESTIONS = [
    "Is there a water area?",
    "How many residential buildings are there?",
    "Are there more roads than buildings?",
    "Is it a rural or an urban area",
    "What is the number of small commercial buildings?",
    "Is a road on the left of a water area present?",
]


def _model_path() -> Path:
    """The GGUF fetched by ``make llm-setup`` ($GRAFT_VQA_LLM_GGUF overrides)."""
    explicit = os.environ.get("GRAFT_VQA_LLM_GGUF")
    if explicit:
        return Path(explicit)
    spec = importlib.util.spec_from_file_location("fetch_model", REPO / "bench" / "llm" / "fetch_model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("fetch_model", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    home = Path(_HOME_AT_IMPORT).expanduser() if _HOME_AT_IMPORT else Path.home() / ".cache" / "graft_vqa"
    return home / "llm" / module.MODELS["qwen2.5-coder-0.5b"].filename


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama") / "server.log"
    threads = int(os.environ.get("GRAFT_VQA_LLM_THREADS", "2"))  # 1 is much faster on a CPU shared with others
    with LlamaServer(_model_path(), alias="qwen2.5-coder-0.5b", log_path=log, n_threads=threads) as server:
        yield server


FELL_BACK = "planner's program instead"  # the warning of an answer that came from the rule fallback


@pytest.fixture(scope="module")
def answers(llm_server, tmp_path_factory):
    """Each question asked once through the engine as the benchmark runs it (rule fallback on):
    question -> (answer, the planner's chat requests for it)."""
    from graft_vqa.planner import OpenAIPlanner

    out = {}
    for question in QUESTIONS:
        parsed = parse_question(question)
        scene = scene_for(parsed, seed=len(question))
        planner = OpenAIPlanner(base_url=llm_server.base_url, model=llm_server.alias, api_key="not-needed",
                                timeout=900)
        config = EngineConfig(gsd_m=GSD_M, find=FindConfig(refine="none"), planner_fallback=True,
                              cache_dir=str(tmp_path_factory.mktemp("programs")))
        answer = Engine(scorer=SceneScorer(scene), planner=planner, config=config).ask(scene.image(), question)
        out[question] = (answer, planner.requests)
    return out


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_real_small_model_answers_with_the_right_kind(answers, question):
    answer, requests = answers[question]
    assert answer.error is None, (answer.error, answer.program)
    assert answer.kind == EXPECTED_KIND[parse_question(question).type], answer.program
    assert requests >= 1 and "execute_command" in answer.program  # the model was asked


def test_the_model_itself_answers_at_least_half(answers):
    """The fallback must not hide a model that never works: at least half the answers are its own
    (the benchmark's 61 questions: about half, bench/README.md)."""
    own = [q for q, (a, _) in answers.items() if not any(FELL_BACK in w for w in a.warnings)]
    assert len(own) * 2 >= len(QUESTIONS), f"the model's own programs answered only {own}"
