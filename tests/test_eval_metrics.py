"""RSVQA metrics against hand-computed values, through loader, runner and report, in both layouts."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from graft_vqa.interfaces.evaluation.metrics import RSVQA_BINS, bin_label, is_correct, parse_number
from graft_vqa.interfaces.evaluation.report import build_report
from graft_vqa.interfaces.evaluation.rsvqa import load_rsvqa
from graft_vqa.interfaces.evaluation.runner import read_predictions, run
from graft_vqa.answer import Answer
from tests.fixtures.rsvqa_data import write_rsvqa
from tests.fixtures.rsvqa_fake import ScriptedAnswerer


def _a(text: str, value=None, **kw) -> Answer:
    return Answer(answer=text, value=value, **kw)


FAIL = dict(status="error", error="NameError: name 'x' is not defined")

# (img_id, type, question, ground truth, scripted answer)
LR_CASES = [
    (0, "presence", "Is there a road?", "yes", _a("yes", True)),                    # right
    (0, "comp", "Are there more buildings than water areas?", "no", _a("Yes", True)),  # wrong
    (0, "count", "How many buildings are there?", "34", _a("12", 12)),              # right: both 11-100
    (1, "count", "How many roads are there?", "0", _a("0", 0)),                      # right, exact
    (1, "count", "How many water areas are there?", "10", _a("11", 11)),            # wrong: 1-10 vs 11-100
    (1, "rural_urban", "Is it a rural or an urban area", "urban", _a("urban", "urban")),  # right
    (1, "presence", "Is there a farmland?", "no", _a("", None, **FAIL)),             # failed -> wrong
    (2, "count", "How many parkings are there?", "1500", _a("1001", 1001)),         # right: both > 1000
    (2, "comp", "Are there more roads than buildings?", "yes", _a("yes", True)),    # right
    (2, "count", "How many farmlands are there?", "5", _a("0", 0)),                 # wrong: 1-10 vs 0
]
HR_CASES = [
    (0, "presence", "Is there a road?", "yes", _a("yes", True)),                     # right
    (0, "comp", "Are there more roads than buildings?", "no", _a("no", False)),      # right
    (0, "count", "How many buildings are there?", "3", _a("3", 3)),                  # right
    (0, "count", "How many roads are there?", "4", _a("5", 5)),                      # wrong: HR counts are exact
    (1, "area", "What is the area covered by buildings?", "10632m2", _a("1520 m2", 1520.0, kind="area_m2")),  # right
    (1, "area", "What is the area covered by roads?", "0m2", _a("12 m2", 12.0, kind="area_m2")),  # wrong
    (1, "area", "What is the area covered by parkings?", "640m2", _a("", None, status="timeout",
                                                                        error="program ran over 30 s")),  # failed
    (1, "presence", "Is there a water area?", "no", _a("yes", True)),               # wrong
]


def _evaluate(tmp_path: Path, layout: str, cases: list) -> dict:
    root = write_rsvqa(tmp_path / layout, layout, [c[:4] for c in cases])
    data = load_rsvqa(root, "test")
    fake = ScriptedAnswerer({c[2]: c[4] for c in cases})
    run(data, data.questions, fake, tmp_path / f"out_{layout}", load_image=fake.load_image, progress=False)
    meta = {"layout": layout, "split": "test", "protocol": "full", "types": list(data.layout.types),
            "expected_qids": [q.qid for q in data.questions]}
    return build_report(meta, read_predictions(tmp_path / f"out_{layout}" / "predictions.jsonl").values())


def test_lr_metrics_match_hand_computed_values(tmp_path: Path) -> None:
    rep = _evaluate(tmp_path, "lr", LR_CASES)
    m = rep["metrics"]
    acc = {t: v["accuracy"] for t, v in m["per_type"].items()}
    assert acc == pytest.approx({"presence": 1 / 2, "comp": 1 / 2, "count": 3 / 5, "rural_urban": 1.0})
    assert m["OA"] == pytest.approx(6 / 10)
    assert m["AA"] == pytest.approx((0.5 + 0.5 + 0.6 + 1.0) / 4)
    # count errors |12-34|, |0-0|, |11-10|, |1001-1500|, |0-5|
    assert m["count"]["exact_accuracy"] == pytest.approx(1 / 5)
    assert m["count"]["mae"] == pytest.approx((22 + 0 + 1 + 499 + 5) / 5)
    assert m["count"]["rmse"] == pytest.approx(math.sqrt((22**2 + 0 + 1 + 499**2 + 5**2) / 5))
    assert m["area"] is None
    assert rep["failures"]["n"] == 1 and rep["failures"]["listed"][0]["question"] == "Is there a farmland?"
    assert rep["accounting"] == {"expected": 10, "answered": 10, "missing": 0, "missing_qids": [], "complete": True}
    modes = {fm["mode"]: fm["n"] for fm in rep["failure_modes"]}
    assert modes == {"comp: truth 'no', predicted 'yes'": 1,
                     "count: truth between 1 and 10, predicted between 11 and 100": 1,
                     "count: truth between 1 and 10, predicted 0": 1,
                     "presence: program failed (error): NameError: name 'x' is not defined": 1}


def test_hr_metrics_match_hand_computed_values(tmp_path: Path) -> None:
    rep = _evaluate(tmp_path, "hr", HR_CASES)
    m = rep["metrics"]
    acc = {t: v["accuracy"] for t, v in m["per_type"].items()}
    assert acc == pytest.approx({"presence": 1 / 2, "comp": 1.0, "count": 1 / 2, "area": 1 / 3})
    assert m["OA"] == pytest.approx(4 / 8)
    assert m["AA"] == pytest.approx((0.5 + 1.0 + 0.5 + 1 / 3) / 4)
    assert m["count"]["exact_accuracy"] == pytest.approx(1 / 2)
    assert m["count"]["mae"] == pytest.approx(0.5)
    assert m["area"]["n"] == 3 and m["area"]["n_numeric"] == 2
    assert m["area"]["mae"] == pytest.approx((10632 - 1520 + 12) / 2)
    assert rep["failures"]["by_status"] == {"timeout": 1}
    modes = {fm["mode"]: fm["n"] for fm in rep["failure_modes"]}
    assert modes == {  # HR counts are scored exactly, so their mode names integers, not classes
        "count: truth 4, predicted 5": 1,
        "area: truth 0, predicted between 11 and 100": 1,
        "area: program failed (timeout): program ran over 30 s": 1,
        "presence: truth 'no', predicted 'yes'": 1,
    }


def test_numbers_are_parsed_from_release_and_engine_strings() -> None:
    assert parse_number("34") == 34
    assert parse_number("10632m2") == 10632
    assert parse_number("1520 m2") == 1520
    assert parse_number("1,520 m2") == 1520
    assert parse_number("12.5 m2") == 12.5
    assert parse_number("yes") is None and parse_number(True) is None and parse_number(None) is None


@pytest.mark.parametrize("value,label", [
    (0, "0"), (0.4, "0"), (1, "between 1 and 10"), (10, "between 1 and 10"), (10.4, "between 1 and 10"),
    (11, "between 11 and 100"), (100, "between 11 and 100"), (101, "between 101 and 1000"),
    (1000, "between 101 and 1000"), (1001, "more than 1000"), (10**7, "more than 1000"), (-1, None), (None, None),
])
def test_bins_follow_the_rsvqa_classes(value, label) -> None:
    assert bin_label(value) == label


def test_bins_constant_has_the_five_paper_classes() -> None:
    assert [b[2] for b in RSVQA_BINS] == ["0", "between 1 and 10", "between 11 and 100", "between 101 and 1000",
                                          "more than 1000"]


def test_correctness_is_numeric_not_string_match() -> None:
    assert is_correct("lr", "count", "34", "thirty", None) is False
    assert is_correct("lr", "count", "34", "", 50)  # typed value wins over the string
    assert is_correct("hr", "area", "1000m2", "1000.2 m2")
    assert not is_correct("hr", "area", "1000m2", "1001 m2")
    assert is_correct("hr", "count", "7", "7.0") and not is_correct("hr", "count", "7", "8")
    assert is_correct("lr", "presence", "yes", " Yes. ") and not is_correct("lr", "presence", "", "")


@pytest.mark.parametrize("layout,qtype,gt,prediction", [
    ("lr", "count", "1500", "more than 1000"),
    ("lr", "count", "50", "between 11 and 100"),
    ("lr", "count", "7", "Between 1 and 10."),
    ("hr", "area", "10632m2", "more than 1000 m2"),
    ("lr", "count", "more than 1000", "2500"),
])
def test_class_labels_as_answers_bin_to_their_own_class(layout, qtype, gt, prediction) -> None:
    assert is_correct(layout, qtype, gt, prediction, None)


def test_class_labels_of_another_class_are_wrong() -> None:
    assert not is_correct("lr", "count", "1000", "more than 1000", None)
    assert not is_correct("lr", "count", "5", "between 11 and 100", None)
    assert not is_correct("lr", "count", "5", "yes", None)
    assert not is_correct("lr", "presence", "yes", "yes", True, failed=True)


def test_report_rescores_records_instead_of_trusting_stored_correct(tmp_path: Path) -> None:
    root = write_rsvqa(tmp_path / "lr", "lr", [c[:4] for c in LR_CASES])
    data = load_rsvqa(root, "test")
    fake = ScriptedAnswerer({c[2]: c[4] for c in LR_CASES})
    run(data, data.questions, fake, tmp_path / "out", load_image=fake.load_image, progress=False)
    recs = list(read_predictions(tmp_path / "out" / "predictions.jsonl").values())
    meta = {"layout": "lr", "split": "test", "protocol": "full", "types": list(data.layout.types),
            "expected_qids": [q.qid for q in data.questions]}
    honest = build_report(meta, recs)
    lying = build_report(meta, [{**r, "correct": not r["correct"]} for r in recs])
    assert lying["metrics"] == honest["metrics"] and lying["failure_modes"] == honest["failure_modes"]
    assert honest["metrics"]["OA"] == pytest.approx(6 / 10)
    # an old run whose label answer ("more than 1000") was scored wrong is re-scored right
    old = [{**r, "prediction": "more than 1000", "value": None, "correct": False}
           if r["question"] == "How many parkings are there?" else r for r in recs]
    assert build_report(meta, old)["metrics"]["OA"] == pytest.approx(6 / 10)
