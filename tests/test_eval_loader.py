"""RSVQA loaders: layout detection, inactive placeholders, answer links, GSD, missing data."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from graft_vqa.interfaces.evaluation.rsvqa import detect_layout, load_rsvqa, parse_gsd
from graft_vqa.core.errors import DatasetNotFoundError
from tests.fixtures.rsvqa_data import random_items, write_rsvqa

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsvqa_lr_sample"


@pytest.mark.parametrize("layout", ["lr", "hr"])
def test_loader_keeps_every_active_question_with_its_answer(tmp_path: Path, layout: str) -> None:
    items = random_items(layout, seed=3, n_images=4, per_image=5)
    root = write_rsvqa(tmp_path, layout, items, inactive_every=3)
    data = load_rsvqa(root, "test")
    assert data.layout.name == layout
    got = [(q.img_id, q.type, q.question, q.gt) for q in data.questions]
    assert got == items  # same order, placeholders skipped, answers matched despite offset ids
    raw = json.loads(next(root.glob("*_test_questions.json")).read_text())["questions"]
    assert sum(not q["active"] for q in raw) > 0
    assert all(raw[q.qid]["question"] == q.question for q in data.questions)
    assert set(data.gsd_m.values()) == {10.0 if layout == "lr" else 0.1524}
    assert data.image_path(0).name == "0.tif" and data.image_path(0).parent.name == ("Images_LR" if layout == "lr" else "Data")


def test_hr_test_phili_split_and_layout_detection(tmp_path: Path) -> None:
    root = write_rsvqa(tmp_path, "hr", random_items("hr", 1, 2, 3), split="test_phili")
    assert detect_layout(root).name == "hr"
    assert len(load_rsvqa(root, "test_phili").questions) == 6
    with pytest.raises(DatasetNotFoundError, match="USGS_split_test_questions.json"):
        load_rsvqa(root, "test")
    with pytest.raises(DatasetNotFoundError, match="no split 'test_phili'"):
        load_rsvqa(write_rsvqa(tmp_path / "lr", "lr", random_items("lr", 1, 1, 2)), "test_phili")


def test_missing_files_name_the_file_and_the_download(tmp_path: Path) -> None:
    root = write_rsvqa(tmp_path, "lr", random_items("lr", 2, 3, 2))
    (root / "LR_split_test_answers.json").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"LR_split_test_answers\.json.*rsvqa\.sylvainlobry\.com"):
        load_rsvqa(root)
    root2 = write_rsvqa(tmp_path / "b", "lr", random_items("lr", 2, 3, 2))
    (root2 / "Images_LR" / "2.tif").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"Images_LR/2\.tif.*Zenodo"):
        load_rsvqa(root2)
    (root2 / "LR_split_test_questions.json").write_text('{"questions": [')  # truncated download
    with pytest.raises(DatasetNotFoundError, match="not a complete"):
        load_rsvqa(root2)
    with pytest.raises(DatasetNotFoundError, match="holds no RSVQA release"):
        load_rsvqa(tmp_path / "b" / "Images_LR")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_rsvqa(tmp_path / "nowhere")


def test_inactive_images_without_files_are_fine(tmp_path: Path) -> None:
    items = [(0, "presence", "Is there a road?", "yes"), (2, "count", "How many roads are there?", "3")]
    root = write_rsvqa(tmp_path, "lr", items, inactive_images=(1,))
    assert not (root / "Images_LR" / "1.tif").exists()
    assert [q.img_id for q in load_rsvqa(root).questions] == [0, 2]


def test_gsd_is_read_from_res_x() -> None:
    assert parse_gsd("10m", 1.0) == 10.0
    assert parse_gsd(0.1524, 1.0) == 0.1524
    assert parse_gsd("15cm", 1.0) == pytest.approx(0.15)
    assert parse_gsd("0.5ft", 1.0) == pytest.approx(0.1524)
    assert parse_gsd("unknown", 7.0) == 7.0


def test_real_lr_sample_has_5005_questions_on_50_images() -> None:
    data = load_rsvqa(SAMPLE, "test")
    raw_q = json.loads((SAMPLE / "LR_split_test_questions.json").read_text())["questions"]
    raw_a = json.loads((SAMPLE / "LR_split_test_answers.json").read_text())["answers"]
    by_q = {a["question_id"]: a["answer"] for a in raw_a if a["active"]}
    assert len(data.questions) == sum(q["active"] for q in raw_q) == 5005
    assert len({q.img_id for q in data.questions}) == 50
    assert all(q.gt == by_q[q.qid] for q in data.questions)
    assert Counter(q.type for q in data.questions) == Counter(q["type"] for q in raw_q if q["active"])
    assert set(data.gsd_m.values()) == {10.0}
