"""Loaders for the official RSVQA releases (Lobry et al., TGRS 2020), detected from the folder layout.

Two layouts exist, with the same JSON schema:

* RSVQA-LR: ``LR_split_{train,val,test}_{questions,answers,images}.json`` and ``Images_LR/{img_id}.tif``
  (Sentinel-2, 10 m; types ``presence``, ``comp``, ``count``, ``rural_urban``).
* RSVQA-HR: ``USGS_split_{train,val,test,test_phili}_{questions,answers,images}.json`` and
  ``Data/{img_id}.tif`` (USGS orthophotos, 15 cm; types ``presence``, ``comp``, ``count``, ``area``).

The three lists are positional (``items[i]["id"] == i``) and carry ``"active": false`` placeholders.
Questions point to their answers by ``answers_ids``; each answer points back by ``question_id``.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graft_vqa.core.errors import DatasetNotFoundError

log = logging.getLogger(__name__)

DOWNLOAD_HINT = (
    "Download the official release from the RSVQA project page (https://rsvqa.sylvainlobry.com, "
    "data hosted on Zenodo) and pass its folder as --data-root."
)


@dataclass(frozen=True)
class Layout:
    """How one RSVQA release names its files."""

    name: str  # "lr" or "hr"
    prefix: str  # JSON file prefix, e.g. "LR_split"
    image_dir: str  # folder of {img_id}.tif
    splits: tuple[str, ...]  # splits the official release ships
    types: tuple[str, ...]  # question types of this release
    default_gsd_m: float  # ground sample distance when res_x cannot be read


LAYOUTS: dict[str, Layout] = {
    "lr": Layout("lr", "LR_split", "Images_LR", ("train", "val", "test"),
                 ("presence", "comp", "count", "rural_urban"), 10.0),
    "hr": Layout("hr", "USGS_split", "Data", ("train", "val", "test", "test_phili"),
                 ("presence", "comp", "count", "area"), 0.1524),
}

_UNIT_M = {"": 1.0, "m": 1.0, "cm": 0.01, "mm": 0.001, "ft": 0.3048, "feet": 0.3048, "foot": 0.3048}


@dataclass(frozen=True)
class Question:
    """One active RSVQA question with its ground-truth answer."""

    qid: int  # question id (position in the questions list)
    img_id: int  # image id
    type: str  # presence, comp, count, rural_urban or area
    question: str  # the question text as released
    gt: str  # the raw ground-truth answer string ("yes", "34", "10632m2")


@dataclass
class RSVQASplit:
    """One split of one release: its active questions and where their images are."""

    root: Path  # the data folder
    layout: Layout  # lr or hr
    split: str  # train, val, test or test_phili
    questions: list[Question]  # active questions in id order
    gsd_m: dict[int, float] = field(default_factory=dict)  # image id -> ground sample distance in metres

    def image_path(self, img_id: int) -> Path:
        """The GeoTIFF of image ``img_id``."""
        return self.root / self.layout.image_dir / f"{img_id}.tif"


def detect_layout(root: Path) -> Layout:
    """The layout of the release in ``root``; raises :class:`DatasetNotFoundError` when none is found."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"RSVQA data folder {root} does not exist. {DOWNLOAD_HINT}")
    found = [lay for lay in LAYOUTS.values() if any(root.glob(f"{lay.prefix}_*_questions.json"))]
    if not found:
        raise DatasetNotFoundError(
            f"{root} holds no RSVQA release: expected LR_split_<split>_questions.json (RSVQA-LR) or "
            f"USGS_split_<split>_questions.json (RSVQA-HR). {DOWNLOAD_HINT}")
    if len(found) > 1:
        raise DatasetNotFoundError(f"{root} holds both RSVQA-LR and RSVQA-HR files; pass --layout lr or --layout hr.")
    return found[0]


def parse_gsd(res: Any, default: float) -> float:
    """Ground sample distance in metres from a ``res_x`` field such as ``"10m"``, ``0.1524`` or ``"0.5ft"``."""
    if isinstance(res, (int, float)) and not isinstance(res, bool) and res > 0:
        return float(res)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(res))
    if m and m.group(2).lower() in _UNIT_M and float(m.group(1)) > 0:
        return float(m.group(1)) * _UNIT_M[m.group(2).lower()]
    log.warning("cannot read res_x=%r; using the release's %.4g m", res, default)
    return default


def _read_list(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetNotFoundError(f"missing {path.name} in {path.parent}. {DOWNLOAD_HINT}")
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)[key]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetNotFoundError(
            f"{path} is not a complete RSVQA {key} file ({exc}); re-download it. {DOWNLOAD_HINT}") from None
    return items


def _answer_of(q: dict[str, Any], answers: list[dict[str, Any]], by_qid: dict[int, dict[str, Any]]) -> str:
    """The active answer string of question ``q``, found via ``answers_ids`` and checked by ``question_id``."""
    for aid in q.get("answers_ids") or []:
        if 0 <= aid < len(answers):
            a = answers[aid]
            if a.get("active", True) and a.get("question_id") == q["id"]:
                return str(a["answer"])
    a = by_qid.get(q["id"])
    if a is None:
        raise DatasetNotFoundError(
            f"question {q['id']} has no active answer in the answers file: the release is partial. {DOWNLOAD_HINT}")
    return str(a["answer"])


def load_rsvqa(root: str | Path, split: str = "test", layout: str = "auto") -> RSVQASplit:
    """Load one split of RSVQA-LR or RSVQA-HR from ``root`` (``layout`` "auto" detects it).

    Every active question is returned; inactive placeholders are skipped. Missing files, missing
    images and dangling ids raise :class:`DatasetNotFoundError` naming the file.
    """
    root = Path(root)
    lay = detect_layout(root) if layout == "auto" else LAYOUTS[layout]
    if split not in lay.splits:
        raise DatasetNotFoundError(f"RSVQA-{lay.name.upper()} has no split {split!r}; choose one of {lay.splits}.")
    stem = root / f"{lay.prefix}_{split}"
    qs = _read_list(Path(f"{stem}_questions.json"), "questions")
    answers = _read_list(Path(f"{stem}_answers.json"), "answers")
    images = _read_list(Path(f"{stem}_images.json"), "images")
    by_qid = {a["question_id"]: a for a in answers if a.get("active", True)}
    out: list[Question] = []
    gsd: dict[int, float] = {}
    for q in qs:
        if not q.get("active", True):
            continue
        img_id = int(q["img_id"])
        if not (0 <= img_id < len(images)) or not images[img_id].get("active", True):
            raise DatasetNotFoundError(
                f"question {q['id']} refers to image {img_id}, which {stem.name}_images.json lacks. {DOWNLOAD_HINT}")
        if img_id not in gsd:
            gsd[img_id] = parse_gsd(images[img_id].get("res_x"), lay.default_gsd_m)
        out.append(Question(int(q["id"]), img_id, str(q["type"]), str(q["question"]), _answer_of(q, answers, by_qid)))
    data = RSVQASplit(root, lay, split, out, gsd)
    missing = [i for i in sorted(gsd) if not data.image_path(i).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{len(missing)} image(s) missing, first {data.image_path(missing[0])}. {DOWNLOAD_HINT}")
    log.info("RSVQA-%s %s: %d active questions on %d images", lay.name.upper(), split, len(out), len(gsd))
    return data
