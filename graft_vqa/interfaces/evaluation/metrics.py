"""RSVQA metrics as the RSVQA paper defines them, decided numerically where answers are numbers.

Source: S. Lobry, D. Marcos, J. Murray, D. Tuia, "RSVQA: Visual Question Answering for Remote Sensing
Data", IEEE TGRS 58(12), 2020, Sec. III (data sets) and Sec. V (results). The paper quantises the
numerical answers it does not treat as exact classes:

* RSVQA-LR count answers into five classes: 0, between 1 and 10, between 11 and 100, between 101 and
  1000, more than 1000;
* area answers (RSVQA-HR) into the same five classes in m2: 0 m2, between 1 and 10 m2, 11-100 m2,
  101-1000 m2, more than 1000 m2;
* RSVQA-HR count answers are compared exactly.

Accuracy per question type, AA (average accuracy: the mean of the per-type accuracies) and OA
(overall accuracy over all questions) are the paper's figures. Exact-count accuracy, count MAE/RMSE
and area MAE are extra columns. Numbers are parsed from the strings ("34", "10632m2", "1520 m2") and
rounded to the nearest integer before binning, since the release's answers are integers.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

# (lowest, highest) inclusive integer bounds of each RSVQA quantisation class, and its label.
RSVQA_BINS: tuple[tuple[int, float, str], ...] = (
    (0, 0, "0"),
    (1, 10, "between 1 and 10"),
    (11, 100, "between 11 and 100"),
    (101, 1000, "between 101 and 1000"),
    (1001, math.inf, "more than 1000"),
)
# (layout, question type) pairs compared in RSVQA_BINS rather than exactly.
BINNED_TYPES: frozenset[tuple[str, str]] = frozenset({("lr", "count"), ("lr", "area"), ("hr", "area")})
NUMERIC_TYPES: frozenset[str] = frozenset({"count", "area"})
# The reduced protocol that LLM papers report (GeoChat, Kuckreja et al., CVPR 2024): question types
# per layout, and the HR split (test set 2, Philadelphia).
GEOCHAT_TYPES: dict[str, tuple[str, ...]] = {"lr": ("presence", "comp", "rural_urban"), "hr": ("presence", "comp")}
GEOCHAT_SPLIT: dict[str, str] = {"lr": "test", "hr": "test_phili"}

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalize_text(s: Any) -> str:
    """Lower-case, trimmed, without a trailing full stop."""
    return str(s).strip().lower().rstrip(".").strip()


def parse_number(s: Any) -> float | None:
    """The first number in ``s`` ("34", "10632m2", "1,520 m2" -> 1520.0), or None when there is none."""
    if isinstance(s, bool) or s is None:
        return None
    if isinstance(s, (int, float)):
        return float(s) if math.isfinite(s) else None
    m = _NUMBER.search(re.sub(r"(?<=\d)[,_](?=\d{3})", "", str(s)))
    return float(m.group()) if m else None


def bin_label(value: float | None) -> str | None:
    """The RSVQA class of a count or an area (rounded to an integer), or None for missing/negative values."""
    if value is None or value < 0 or not math.isfinite(value):
        return None
    v = math.floor(value + 0.5)
    for lo, hi, label in RSVQA_BINS:
        if lo <= v <= hi:
            return label
    return None


def prediction_number(prediction: str, value: Any) -> float | None:
    """The numeric prediction: the typed ``value`` when it is a number, else parsed from the string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_number(value)
    return parse_number(prediction)


def same_integer(a: float, b: float) -> bool:
    """Whether two numbers round to the same integer (how exact counts are compared)."""
    return math.floor(a + 0.5) == math.floor(b + 0.5)


_LABELS: frozenset[str] = frozenset(label for _, _, label in RSVQA_BINS)


def answer_class(text: Any, value: Any = None) -> str | None:
    """The RSVQA class of an answer: its text when it names a class ("more than 1000", "between 11
    and 100 m2"), else the class of its number (typed ``value`` first, then parsed from the text)."""
    label = re.sub(r"\s*(m2|m²|square met(er|re)s)$", "", normalize_text(text))
    if label in _LABELS:
        return label
    return bin_label(prediction_number(str(text), value))


def is_correct(layout: str, qtype: str, gt: str, prediction: str, value: Any = None,
               failed: bool = False) -> bool:
    """Whether ``prediction`` answers a question of ``qtype`` with ground truth ``gt`` under RSVQA rules
    (always False for a failed program)."""
    if failed:
        return False
    if qtype not in NUMERIC_TYPES:
        return normalize_text(prediction) == normalize_text(gt) and normalize_text(gt) != ""
    if (layout, qtype) in BINNED_TYPES:
        g, p = answer_class(gt), answer_class(prediction, value)
        return g is not None and g == p
    g, p = parse_number(gt), prediction_number(prediction, value)
    return g is not None and p is not None and same_integer(p, g)


def summarize(records: Iterable[dict[str, Any]], types: Iterable[str] | None = None) -> dict[str, Any]:
    """Per-type accuracy, AA, OA and the extra numeric columns of prediction records.

    Each record needs ``type``, ``gt``, ``prediction``, ``value``, ``correct`` (failed programs are
    records with ``correct`` False). ``types`` fixes the type order (default: sorted as found).
    """
    recs = list(records)
    order = list(types) if types is not None else sorted({r["type"] for r in recs})
    per_type: dict[str, dict[str, Any]] = {}
    for t in order:
        rs = [r for r in recs if r["type"] == t]
        if rs:
            n_ok = sum(bool(r["correct"]) for r in rs)
            per_type[t] = {"n": len(rs), "correct": n_ok, "accuracy": n_ok / len(rs)}
    n_correct = sum(bool(r["correct"]) for r in recs)
    accs = [v["accuracy"] for v in per_type.values()]
    return {
        "n": len(recs),
        "correct": n_correct,
        "OA": n_correct / len(recs) if recs else None,
        "AA": sum(accs) / len(accs) if accs else None,
        "per_type": per_type,
        "count": _numeric_errors([r for r in recs if r["type"] == "count"], exact=True),
        "area": _numeric_errors([r for r in recs if r["type"] == "area"], exact=False),
    }


def _numeric_errors(recs: list[dict[str, Any]], exact: bool) -> dict[str, Any] | None:
    """MAE/RMSE over records whose prediction parses as a number; exact accuracy over all (counts)."""
    if not recs:
        return None
    pairs = []
    for r in recs:
        g, p = parse_number(r["gt"]), prediction_number(r.get("prediction", ""), r.get("value"))
        if g is not None and p is not None:
            pairs.append((g, p))
    errs = [abs(p - g) for g, p in pairs]
    out: dict[str, Any] = {
        "n": len(recs),
        "n_numeric": len(pairs),
        "mae": sum(errs) / len(errs) if errs else None,
        "rmse": math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else None,
    }
    if exact:
        hits = sum(same_integer(p, g) for g, p in pairs)
        out["exact_accuracy"] = hits / len(recs)
    return out
