"""The app's error messages and event handlers, without a browser."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graft_vqa.answer import Answer, Detection
from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import (PlannerError, QuestionNotUnderstoodError, UnreadableTileError,
                              WeightsNotFoundError)
from graft_vqa.interfaces.app.handlers import NO_TILE, handle_question, handle_upload
from graft_vqa.interfaces.app.messages import answer_failure_message, error_message
from graft_vqa.interfaces.app.session import EnginePool, UISettings, default_engine_factory

TILE = "neon_osbs_029_10cm.tif"


@pytest.mark.parametrize("exc, advice", [
    (UnreadableTileError("x.tif is not a readable raster"), "GeoTIFF"),
    (WeightsNotFoundError("no GRAFT checkpoint"), "--allow-untrained"),
    (PlannerError("connection refused"), "base URL"),
    (QuestionNotUnderstoodError("cannot parse"), "example"),
    (RuntimeError("boom"), "still running"),
])
def test_error_messages_say_what_failed_and_what_to_do(exc, advice):
    text = error_message(exc, "Could not load x.tif")
    assert "Could not load x.tif" in text and str(exc) in text
    assert "What to do" in text and advice in text
    assert ("RuntimeError" in text) == isinstance(exc, RuntimeError)


def test_failed_answer_messages_by_status():
    for status, word in [("refused", "refused"), ("planner_error", "planner"), ("timeout", "too long")]:
        answer = Answer(answer=f"failed ({status})", error="the reason", status=status)
        text = answer_failure_message(answer)
        assert word in text and "the reason" in text and "What to do" in text
    # a rejected question: its own two lines (what failed, three examples), nothing repeated after them
    answer = Answer(answer="failed (not_understood)", status="not_understood",
                    error='did not understand \'x\'; use an LLM planner (planner=OpenAIPlanner(...)).\n'
                          'It understands, for example: "How many cars are there?"')
    text = answer_failure_message(answer)
    assert "not understood" in text and "How many cars are there?" in text and "What to do" not in text
    assert 'the "openai" Planner in Settings' in text and "OpenAIPlanner" not in text


def test_bad_upload_is_a_chat_error_and_clears_the_tile(tmp_path, shared_data):
    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    assert state.tile_path is not None
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image\n")
    state, preview, info, history = handle_upload(str(bad), state, history, 50)
    assert preview is None and state.tile_path is None and "notes.tif" in info
    assert "notes.tif" in history[-1]["content"] and "What to do" in history[-1]["content"]
    history, _, geojson, state = handle_question("How many buildings are there?", state, history,
                                                 UISettings(), EnginePool(lambda s: None))
    assert history[-1]["content"] == NO_TILE and geojson is None


def test_upload_size_limit(tmp_path, shared_data):
    state, preview, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 0.1, tmp_path)
    assert preview is None and state.tile_path is None
    assert "upload limit" in history[-1]["content"]


class _FixedEngine:
    """Returns one prepared answer; records the images it was asked about."""

    def __init__(self, answer: Answer | Exception) -> None:
        self.answer, self.images = answer, []

    def ask(self, image, question):
        self.images.append(image)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer.model_copy(update={"question": question})


def _answer() -> Answer:
    ring = [(10.0, 10.0), (40.0, 10.0), (40.0, 40.0), (10.0, 40.0)]
    dets = [Detection(name="building", score=0.3, box=(10, 10, 40, 40), polygon_px=[ring]),
            Detection(name="building", score=0.2, box=(100, 100, 120, 120))]
    program = 'def execute_command(p):\n    return len(p.find("building"))\n'
    return Answer(answer="2", value=2, kind="count", program=program, detections=dets,
                  timings={"plan_s": 0.01, "run_s": 0.2})


def test_answer_gets_text_overlay_program_and_geojson(tmp_path, shared_data):
    engine = _FixedEngine(_answer())
    state, rgb, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    history, box, geojson, state = handle_question("How many buildings?", state, history, UISettings(),
                                                   EnginePool(lambda s: engine))
    assert box == "" and [image.path for image in engine.images] == [state.tile_path]
    contents = [m["content"] for m in history[-4:]]
    assert contents[0].startswith("**2**")
    overlay = np.asarray(Image.open(contents[1]["path"]))
    assert overlay.shape[1] >= rgb.shape[1] and overlay.shape[0] > rgb.shape[0]  # enlarged + legend
    assert history[-2]["metadata"]["title"] == "Program" and "find(\"building\")" in contents[2]
    collection = json.loads(Path(geojson).read_text())
    assert len(collection["features"]) == 2 and contents[3]["path"] == geojson
    assert state.workdir.parent == tmp_path
    state.close()
    assert not state.workdir.exists()


def test_engine_errors_become_messages_and_the_next_question_works(tmp_path, shared_data):
    engine = _FixedEngine(WeightsNotFoundError("no GRAFT weights in ~/.cache"))
    pool = EnginePool(lambda s: engine)
    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    history, *_ = handle_question("How many buildings?", state, history, UISettings(), pool)
    assert "no GRAFT weights" in history[-1]["content"] and "--allow-untrained" in history[-1]["content"]
    engine.answer = Answer(answer="failed (refused)", error="import is not allowed", status="refused",
                           program="import os")
    history, *_ = handle_question("Anything?", state, history, UISettings(), pool)
    assert "refused" in history[-2]["content"] and history[-1]["metadata"]["title"] == "Program"
    engine.answer = _answer()
    history, _, geojson, _ = handle_question("How many buildings?", state, history, UISettings(), pool)
    assert geojson is not None and history[-4]["content"].startswith("**2**")


def test_engine_pool_one_engine_per_settings():
    built = []
    pool = EnginePool(lambda s: built.append(s) or object(), max_engines=2)
    a, b = UISettings(threshold=0.1), UISettings(threshold=0.2)
    assert pool.get(a)[0] is pool.get(a)[0] and pool.get(b)[0] is not pool.get(a)[0]
    assert built == [a, b]
    pool.get(UISettings(threshold=0.3))
    assert len(pool) == 2


def test_default_factory_applies_settings():
    factory = default_engine_factory(EngineConfig(graft_model="graft-tiny"))
    engine = factory(UISettings(threshold=0.07, refine="none", gsd_m=2.5))
    assert engine.config.graft_model == "graft-tiny" and engine.config.find.threshold == 0.07
    assert engine.config.find.refine == "none" and engine.config.gsd_m == 2.5
    llm = factory(UISettings(planner="openai", base_url="http://127.0.0.1:9/v1", model="m"))
    assert type(llm.planner).__name__ == "OpenAIPlanner" and llm.planner.model == "m"


def test_llm_down_is_a_chat_message(tmp_path, shared_data):
    from tests.browser.server import free_port

    factory = default_engine_factory(EngineConfig(graft_model="graft-tiny"))
    settings = UISettings(planner="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", refine="none")

    class _NoScorer:  # the planner fails before any scoring
        def score_maps(self, tile, queries):
            raise AssertionError("scored although planning failed")

    def with_stub_scorer(s):
        engine = factory(s)
        engine._scorer = _NoScorer()
        return engine

    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    history, _, geojson, _ = handle_question("How many buildings are there?", state, history, settings,
                                             EnginePool(with_stub_scorer))
    text = history[-1]["content"]
    assert geojson is None and "planner failed" in text and "could not connect" in text and "base URL" in text


def test_warnings_get_their_own_collapsed_message(tmp_path, shared_data):
    warning = "GRAFT weights were not found and random weights are used: answers are NOT meaningful"
    engine = _FixedEngine(_answer().model_copy(update={"warnings": [warning, "SAM refinement is off"]}))
    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    history, *_ = handle_question("How many buildings?", state, history, UISettings(), EnginePool(lambda s: engine))
    notes = [m for m in history if m.get("metadata", {}).get("title", "").startswith("2 warnings")]
    assert len(notes) == 1 and notes[0]["metadata"]["status"] == "done"
    assert warning in notes[0]["content"] and "SAM refinement is off" in notes[0]["content"]


def test_the_tile_is_loaded_once_per_question_and_shared_by_the_steps(tmp_path, shared_data, monkeypatch):
    from graft_vqa.core import tiles as tile_module
    from graft_vqa.engine import Engine
    from tests.synthetic import RectScorer

    loads = []
    real_load = tile_module.load_tile
    state, _, _, history = handle_upload(str(shared_data / "tiles" / TILE), None, [], 50, tmp_path)
    monkeypatch.setattr(tile_module, "load_tile", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    engine = Engine(scorer=RectScorer({"building": [(10, 40, 10, 40)]}), refine="none")
    history, *_ = handle_question("How many buildings?", state, history, UISettings(), EnginePool(lambda s: engine))
    assert history[-4]["content"].startswith("**1**")
    reads = [a for a in loads if isinstance(a, (str, Path))]  # a Tile passed on is returned as is
    assert reads == [state.tile_path]  # read once, by the "encoding the tile" step; the engine reuses it
