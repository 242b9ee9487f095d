"""``Engine`` / ``ask`` end to end: rule planner → sandbox → find → coercion, with known score maps."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graft_vqa
from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.core.errors import TileNotFoundError, WeightsNotFoundError
from graft_vqa.planner import Program

from .fixtures.geo import ground_pixel_areas
from .synthetic import RectScorer

UTM_5M = "tiles/rgbn_5m_utm18n.tif"  # 515 x 403 (w x h), 5 m pixels
BUILDINGS = [(10, 30, 10, 40), (100, 120, 200, 230), (300, 310, 400, 420)]  # separate rectangles
ROADS = [(50, 60, 0, 500)]


def rect_area(rects) -> int:
    return sum((b - t) * (r - l) for t, b, l, r in rects)


@pytest.fixture
def engine():
    scorer = RectScorer({"building": BUILDINGS, "road": ROADS}, image_scores={"urban": 0.3, "rural": 0.1})
    config = EngineConfig(find=FindConfig(threshold=0.25, refine="none"))
    return Engine(scorer=scorer, config=config)


def test_count_presence_area_and_comparison(engine, shared_data):
    tile = shared_data / UTM_5M
    count = engine.ask(tile, "How many buildings are there?")
    assert (count.answer, count.value, count.kind, count.error) == (str(len(BUILDINGS)), len(BUILDINGS), "count", None)
    assert len(count.detections) == len(BUILDINGS)

    assert engine.ask(tile, "Is there a road?").answer == "yes"
    assert engine.ask(tile, "Is there a water area?").answer == "no"

    area = engine.ask(tile, "What is the area covered by buildings?")
    rows = ground_pixel_areas(tile)[:, 0]  # true ground m² per pixel row (5 m grid, UTM scale factor)
    expected_m2 = sum((r - l) * rows[t:b].sum() for t, b, l, r in BUILDINGS)
    assert area.kind == "area_m2"
    assert area.value == pytest.approx(expected_m2, rel=1e-6)
    assert area.answer == f"{round(area.value)} m2"
    assert expected_m2 == pytest.approx(rect_area(BUILDINGS) * 25.0, rel=2e-3)  # close to the plane area

    more = engine.ask(tile, "Are there more buildings than roads?")
    assert more.answer == "yes"  # 3 buildings, 1 road
    assert engine.ask(tile, "Is it a rural or an urban area?").answer == "urban"


def test_features_are_reused_across_questions(engine, shared_data):
    tile = shared_data / UTM_5M
    engine.ask(tile, "How many buildings are there?")
    engine.ask(tile, "Is there a building?")
    engine.ask(tile, "What is the number of roads?")
    assert engine.scorer.queries.count("building") == 1
    assert engine.scorer.queries.count("road") == 1


def test_answer_carries_program_timings_and_geojson(engine, shared_data):
    answer = engine.ask(shared_data / UTM_5M, "How many buildings are there?")
    assert "def execute_command(image_patch)" in answer.program
    assert {"plan_s", "run_s", "total_s"} <= set(answer.timings)
    collection = answer.to_geojson()
    assert len(collection["features"]) == len(BUILDINGS)
    assert collection["properties"]["source_crs"] == "EPSG:32618" and "crs" not in collection  # RFC 7946: WGS84
    json.dumps(collection)  # serialisable


class ScriptedPlanner:
    """Replies with fixed programs in turn (the last one repeats); records the feedback it got."""

    planner_id = "scripted"
    prompt_version = "1"
    deterministic = False

    def __init__(self, *sources: str) -> None:
        self.sources = list(sources)
        self.feedback: list[str | None] = []

    def plan(self, question: str, feedback: str | None = None) -> Program:
        self.feedback.append(feedback)
        source = self.sources.pop(0) if len(self.sources) > 1 else self.sources[0]
        return Program(source=source, planner=self.planner_id, question=question, meta={})


@pytest.mark.parametrize("source, status", [
    ("def execute_command(image_patch):\n    return 1 / 0\n", "planner_error"),
    ("def execute_command(image_patch):\n    import os\n    return True\n", "planner_error"),
    # an unusable return value is fed back to an LLM planner like any error, so planning fails
    ("def execute_command(image_patch):\n    return None\n", "planner_error"),
    ("def execute_command(image_patch):\n    return [1, 2]\n", "planner_error"),
])
def test_failed_programs_are_failures_never_no(source, status, shared_data):
    engine = Engine(scorer=RectScorer({}), planner=ScriptedPlanner(source),
                    config=EngineConfig(find=FindConfig(refine="none")))
    answer = engine.ask(shared_data / UTM_5M, "Is there a road?")
    assert answer.status == status
    assert answer.error
    assert answer.value is None and answer.answer not in {"no", "yes"}


def test_llm_errors_are_fed_back_and_the_working_program_answers(shared_data):
    broken = "def execute_command(image_patch):\n    return image_patch.count('road') / 0\n"
    good = "def execute_command(image_patch):\n    return image_patch.count('road')\n"
    planner = ScriptedPlanner(broken, good)
    engine = Engine(scorer=RectScorer({"road": ROADS}), planner=planner,
                    config=EngineConfig(find=FindConfig(refine="none", threshold=0.25)))
    answer = engine.ask(shared_data / UTM_5M, "How many roads are there?")
    assert (answer.answer, answer.error) == ("1", None)
    assert planner.feedback[0] is None and "division" in planner.feedback[1].lower()
    assert answer.program == good


def test_question_not_understood_is_said(engine, shared_data):
    answer = engine.ask(shared_data / UTM_5M, "Paint me a sunset")
    assert answer.status == "not_understood"
    assert answer.error and answer.answer != "no"


def test_ask_on_an_array_with_gsd(shared_data):
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    scorer = RectScorer({"pond": [(10, 20, 10, 30)]})
    answer = graft_vqa.ask(image, "What is the area covered by ponds?", scorer=scorer, gsd_m=2.0,
                           find=FindConfig(refine="none", threshold=0.25))
    assert answer.value == pytest.approx(10 * 20 * 4.0)


def test_missing_tile_raises_a_clear_error(engine, tmp_path):
    with pytest.raises(TileNotFoundError, match="nope.tif"):
        engine.ask(tmp_path / "nope.tif", "Is there a road?")


def test_missing_weights_say_what_to_fetch(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    engine = Engine(config=EngineConfig(find=FindConfig(refine="none")))
    with pytest.raises(WeightsNotFoundError, match="graft_naip_patch.ckpt"):
        engine.ask(shared_data / UTM_5M, "Is there a road?")


def test_untrained_graft_end_to_end_warns_on_every_answer(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    config = EngineConfig(graft_model="graft-tiny", text_model="clip-tiny", allow_untrained=True)
    engine = Engine(config=config)
    answer = engine.ask(shared_data / UTM_5M, "How many buildings are there?")
    assert answer.error is None and answer.kind == "count"
    assert any("random weights" in w for w in answer.warnings)
    sam = [w for w in answer.warnings if "SAM" in w]
    assert len(sam) == 1 and "sam_vit_b_01ec64.pth" in sam[0]  # no SAM weights: said once, with the file
    again = engine.ask(shared_data / UTM_5M, "Is there a road?")
    assert any("random weights" in w for w in again.warnings)


def test_ask_names_unknown_options_and_lists_the_known_ones(shared_data):
    from graft_vqa.core.errors import GraftVQAError

    with pytest.raises(GraftVQAError, match="thresh.*allow_untrained"):
        graft_vqa.ask(shared_data / UTM_5M, "Is there a road?", scorer=RectScorer({}), thresh=0.3)


def test_unexpected_coercion_errors_fail_the_answer_not_the_caller(shared_data, monkeypatch):
    import graft_vqa.engine as engine_module

    def broken(value, *, program=""):  # noqa: ANN001, ANN202
        raise ValueError("invalid literal for int() with base 10: '²'")

    monkeypatch.setattr(engine_module, "coerce", broken)
    source = "def execute_command(image_patch):\n    return '5'\n"
    engine = Engine(scorer=RectScorer({}), planner=ScriptedPlanner(source),
                    config=EngineConfig(find=FindConfig(refine="none")))
    answer = engine.ask(shared_data / UTM_5M, "What does the sign say?")  # names no object to search for
    assert answer.status == "planner_error" and answer.value is None  # fed back while planning, then given up
    assert "ValueError" in answer.error and answer.answer not in {"no", "yes", "5"}


def test_superscript_answer_is_text(shared_data):
    source = "def execute_command(image_patch):\n    return '5²'\n"
    engine = Engine(scorer=RectScorer({}), planner=ScriptedPlanner(source),
                    config=EngineConfig(find=FindConfig(refine="none")))
    answer = engine.ask(shared_data / UTM_5M, "What is the unit?")
    assert answer.error is None and (answer.answer, answer.kind) == ("5²", "text")


def test_programs_are_cached_on_disk_by_default(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    engine = Engine(scorer=RectScorer({"building": BUILDINGS}), config=EngineConfig(find=FindConfig(refine="none")))
    assert engine.ask(shared_data / UTM_5M, "How many buildings are there?").error is None
    assert any(p.is_file() for p in (tmp_path / "programs").rglob("*"))


def test_missing_sam_is_said_once_by_the_tile_context_naming_the_file(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_VQA_HOME", str(tmp_path))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    engine = Engine(scorer=RectScorer({"building": BUILDINGS}), config=EngineConfig(find=FindConfig(threshold=0.25)))
    root = engine.image_patch(shared_data / UTM_5M)
    assert root.context.config is engine.config.find  # not rewritten to refine="none"
    for _ in range(2):
        answer = engine.ask(shared_data / UTM_5M, "How many buildings are there?")
        assert answer.answer == str(len(BUILDINGS))
        sam = [w for w in answer.warnings if "SAM" in w]
        assert len(sam) == 1 and "sam_vit_b_01ec64.pth" in sam[0]
