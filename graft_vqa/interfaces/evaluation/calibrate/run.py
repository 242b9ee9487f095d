"""Calibrate find's thresholds on a labelled benchmark split: ``graft-vqa calibrate`` / ``python eval/calibrate.py``.

    graft-vqa calibrate --benchmark rsvqa --data-root DIR --split train --out thresholds.json

Steps: plan every question with the rule planner; split the tiles into search and held-out tiles;
score each tile once for every concept its questions name (and the contrast background); search
the global and per-concept thresholds on the search tiles (:mod:`.search`); write the thresholds
file; answer the held-out questions with the real engine before and after (:mod:`.heldout`);
write the report next to the file (``--report``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm import tqdm

from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import GraftVQAError
from graft_vqa.interfaces.evaluation.calibrate.arguments import OBJECTIVE_TYPES, build_parser, modes_of
from graft_vqa.interfaces.evaluation.calibrate.evaluate import Evaluator
from graft_vqa.interfaces.evaluation.calibrate.heldout import agreement, answer_heldout, summarise
from graft_vqa.interfaces.evaluation.calibrate.maps import MapCache
from graft_vqa.interfaces.evaluation.calibrate.questions import Planned, plan_questions, split_tiles
from graft_vqa.interfaces.evaluation.calibrate.report import write_report
from graft_vqa.interfaces.evaluation.calibrate.search import SearchResult, search
from graft_vqa.interfaces.evaluation.calibrate.space import Summaries, build_space, summary
from graft_vqa.interfaces.evaluation.rsvqa import LAYOUTS, RSVQASplit, detect_layout, load_rsvqa
from graft_vqa.interfaces.evaluation.run import DATA_ROOT_ENV, LAYOUT_WEIGHTS, default_loader
from graft_vqa.interfaces.evaluation.runner import Selection, select
from graft_vqa.interfaces.options import engine_config, given_options
from graft_vqa.perception.contrast import ContrastScorer, load_vocabulary
from graft_vqa.thresholds import FORMAT, VERSION, ThresholdTable, normalise_concept, scorer_id

log = logging.getLogger(__name__)

def _types(text: str | None, layout: str) -> tuple[str, ...]:
    valid = LAYOUTS[layout].types
    if not text:
        return valid
    types = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in types if t not in valid]
    if unknown or not types:
        raise ValueError(f"--types {text!r}: valid types for RSVQA-{layout.upper()} are {', '.join(valid)}")
    return types


def _check(args: argparse.Namespace) -> None:
    if not args.data_root:
        raise ValueError(f"pass --data-root DIR (the RSVQA release folder) or set ${DATA_ROOT_ENV}")
    if args.planner != "rules":
        raise ValueError("calibrate runs each program once per candidate threshold in this process, which only the "
                         "offline rule planner's programs may do: drop --planner (the thresholds then serve any planner)")
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be a positive number of questions, got {args.limit}")
    if args.min_questions < 1:
        raise ValueError(f"--min-questions must be at least 1, got {args.min_questions}")
    if not args.map_cache_gb > 0:
        raise ValueError(f"--map-cache-gb must be positive, got {args.map_cache_gb}")


@dataclasses.dataclass
class Prepared:
    """The split, the planned questions and their tiles, ready to search."""

    data: RSVQASplit
    config: EngineConfig  # the engine's settings ("before"), thresholds file unset
    planned: list[Planned]  # every selected question with its program
    search_ids: list[int]  # tiles the search learns on
    heldout_ids: list[int]  # tiles only the report uses
    tiles: dict[int, Any]  # img_id -> Tile


def prepare(args: argparse.Namespace) -> Prepared:
    """Load the split, plan the questions, split the tiles, load them."""
    from graft_vqa.planner import RulePlanner

    layout = detect_layout(Path(args.data_root)).name if args.layout == "auto" else args.layout
    args.graft_weights = given_options(args).get("graft_weights", LAYOUT_WEIGHTS[layout])
    config = engine_config(args, graft_weights=args.graft_weights)
    config = dataclasses.replace(config, find=dataclasses.replace(config.find, thresholds=None))
    data = load_rsvqa(args.data_root, args.split, layout)
    questions = select(data.questions, Selection(types=_types(args.types, layout), limit=args.limit))
    if not questions:
        raise ValueError("no question selected: check --types and --limit")
    planned = plan_questions(questions, RulePlanner())
    search_ids, heldout_ids = split_tiles((q.img_id for q in questions), args.holdout, args.seed)
    tiles = {i: default_loader(data.image_path(i), data.gsd_m.get(i, data.layout.default_gsd_m))
             for i in search_ids + heldout_ids}
    return Prepared(data, config, planned, search_ids, heldout_ids, tiles)


def score_tiles(prep: Prepared, raw: MapCache, contrast: MapCache, vocabulary: tuple[str, ...],
                modes: tuple[str, ...], progress: bool) -> Summaries:
    """Score every tile once for its questions' concepts and the background vocabulary; return the
    summaries of the search tiles' raw and contrast maps per concept (for the search space)."""
    concepts: dict[int, set[str]] = {i: set() for i in prep.tiles}
    for p in prep.planned:
        concepts[p.question.img_id].update(p.concepts)
    search = set(prep.search_ids)
    summaries: Summaries = {"absolute": defaultdict(list), "contrast": defaultdict(list)}
    for img_id in tqdm(sorted(prep.tiles), desc="score maps", unit="tile", disable=not progress):
        tile, names = prep.tiles[img_id], sorted(concepts[img_id])
        extra = list(vocabulary) if "contrast" in modes else []
        if not names and not extra:
            continue
        maps = raw.score_maps(tile, names + extra)
        if img_id not in search or not names:
            continue
        valid = np.asarray(tile.valid_mask(), dtype=bool)
        for name, score in zip(names, maps):
            summaries["absolute"][normalise_concept(name)].append(summary(score, valid))
        if "contrast" in modes:
            for name, score in zip(names, contrast.score_maps(tile, names)):
                summaries["contrast"][normalise_concept(name)].append(summary(score, valid))
    return summaries


def make_table(result: SearchResult, prep: Prepared, scorer: Any, record: dict[str, Any]) -> ThresholdTable:
    """The thresholds file for ``result``: the calibrated concepts under ``concepts``, the others (which use
    the global entry) with their evidence under ``uncalibrated``."""
    c = prep.config
    model = {"weights_id": scorer_id(scorer), "graft_model": c.graft_model, "graft_weights": c.graft_weights,
             "graft_checkpoint": c.graft_checkpoint, "text_model": c.resolved_text_model(),
             "clip_checkpoint": c.clip_checkpoint, "text_template": c.text_template}
    own = {name: choice for name, choice in result.concepts.items() if choice.source == "calibrated"}
    record = {**record, "format": FORMAT, "version": VERSION,
              "global": {**result.global_threshold.to_dict(), "questions": result.questions,
                         "search_correct": result.correct, "search_correct_engine_setting": result.correct_engine},
              "concepts": {name: choice.to_dict() for name, choice in own.items()},
              "uncalibrated": {name: {k: v for k, v in choice.to_dict().items() if k not in ("mode", "value", "min_area_m2")}
                               for name, choice in result.concepts.items() if name not in own}}
    return ThresholdTable(result.global_threshold, {n: c.threshold for n, c in own.items()}, model, record=record)


def calibrate(args: argparse.Namespace, scorer: Any = None) -> dict[str, Any]:
    """Run the whole calibration (see the module docstring); returns the report. ``scorer`` replaces the
    one the engine options describe (tests pass synthetic scorers)."""
    from graft_vqa.engine import Engine
    from graft_vqa.planner import RulePlanner

    _check(args)
    modes = modes_of(args.modes)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prep = prepare(args)
    if scorer is None:
        scorer = Engine(planner=RulePlanner(), config=prep.config).scorer
    raw = MapCache(scorer, max_bytes=int(args.map_cache_gb * (1 << 30)))
    vocabulary = load_vocabulary(prep.config.find.contrast_vocabulary)
    contrast = MapCache(ContrastScorer(raw, vocabulary, prep.config.find.contrast_logit_scale))
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summaries = score_tiles(prep, raw, contrast, vocabulary, modes, not args.no_progress)
    timings["score_maps_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    objective = [t for t in OBJECTIVE_TYPES if t in {p.question.type for p in prep.planned}]
    search_set = set(prep.search_ids)
    learn = [p for p in prep.planned if p.question.img_id in search_set and p.searchable and p.question.type in objective]
    pixel_area = _median_pixel_area([prep.tiles[i] for i in prep.search_ids])
    space = build_space(modes, prep.config.find, summaries, pixel_area)
    evaluator = Evaluator(prep.tiles, raw, contrast, prep.config.find, prep.data.layout.name)
    with rasterio.Env():  # one GDAL environment for the whole search, not one per traced outline
        result = search(evaluator, learn, space, args.min_questions)
    timings["search_s"] = time.perf_counter() - t0

    record = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "benchmark": _benchmark(args, prep), "contrast": {"vocabulary": list(vocabulary),
                                                                "logit_scale": prep.config.find.contrast_logit_scale},
              "search": {"modes": list(modes), "space": space.to_dict(), "objective_types": objective,
                         "min_questions": args.min_questions, "refine": "none",
                         "find_settings": _find_settings(prep.config)}}
    table = make_table(result, prep, raw, record)
    table.save(args.out)

    t0 = time.perf_counter()
    report_dir = args.report or args.out.with_name(args.out.stem + "_report")
    heldout = [p for p in prep.planned if p.question.img_id not in search_set]
    after_config = dataclasses.replace(prep.config, find=dataclasses.replace(prep.config.find, thresholds=str(args.out)))
    engines = {"before": Engine(scorer=raw, planner=RulePlanner(), config=prep.config),
               "after": Engine(scorer=raw, planner=RulePlanner(), config=after_config)}
    records = answer_heldout(prep.data, heldout, engines, report_dir, lambda path, gsd: prep.tiles[int(path.stem)],
                             not args.no_progress)
    held = summarise(heldout, records, list(_types(args.types, prep.data.layout.name)))
    held["agreement"] = agreement(evaluator, result, heldout, records["after"])
    if prep.config.find.refine == "sam" and engines["after"].refiner is not None:
        held["agreement"]["note"] = "SAM refines the engine's instances, not the search's."
    timings["heldout_s"] = time.perf_counter() - t0

    table.record["heldout"] = {name: {k: held[name][k] for k in ("n", "OA", "AA", "per_type")} for name in ("before", "after")}
    table.record["heldout"]["per_concept"] = held["per_concept"]
    table.save(args.out)
    report = _report(args, prep, table, result, evaluator, raw, held, timings, objective, space)
    write_report(report_dir, report)
    return report


def _median_pixel_area(tiles: list[Any]) -> float | None:
    areas = sorted(t.pixel_area_m2 for t in tiles if getattr(t, "has_area", False))
    return float(areas[len(areas) // 2]) if areas else None


def _find_settings(config: EngineConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config.find).items() if k != "thresholds"}


def _benchmark(args: argparse.Namespace, prep: Prepared) -> dict[str, Any]:
    return {"name": args.benchmark, "data_root": str(Path(args.data_root).resolve()), "layout": prep.data.layout.name,
            "split": prep.data.split, "types": list(_types(args.types, prep.data.layout.name)), "limit": args.limit,
            "questions": len(prep.planned), "tiles": len(prep.tiles), "search_tiles": len(prep.search_ids),
            "heldout_tiles": len(prep.heldout_ids), "heldout_fraction": args.holdout, "seed": args.seed}


def _report(args: argparse.Namespace, prep: Prepared, table: ThresholdTable, result: SearchResult,
            evaluator: Evaluator, raw: MapCache, held: dict[str, Any], timings: dict[str, float],
            objective: list[str], space: Any) -> dict[str, Any]:
    data = table.to_dict()
    return {
        "thresholds_file": str(args.out), "model": data["model"], "benchmark": data["benchmark"],
        "global": data["global"], "concepts": {name: choice.to_dict() for name, choice in result.concepts.items()},
        "heldout": held, "timings": timings,
        "search": {"questions": result.questions, "correct": result.correct, "correct_engine": result.correct_engine,
                   "engine_setting": space.base.describe(), "objective_types": objective,
                   "min_questions": args.min_questions, "space": space.to_dict(),
                   "questions_not_searchable": sum(not p.searchable for p in prep.planned),
                   "programs_run": evaluator.runs, "answers_asked": evaluator.lookups,
                   "uniform_scores": [{**t.to_dict(), "correct": s, "all_questions": full}
                                      for t, s, full in result.scores],
                   "maps": {"calls": raw.calls, "tiles": len(raw.tiles), "recomputed": raw.recomputed}},
    }


def _summary(report: dict[str, Any]) -> str:
    h = report["heldout"]
    fmt = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    calibrated = sum(c["source"] == "calibrated" for c in report["concepts"].values())
    g = report["global"]
    return (f"global {g['mode']} {g['value']:.4g}; {calibrated} of {len(report['concepts'])} concepts calibrated; "
            f"held-out OA {fmt(h['before']['OA'])} -> {fmt(h['after']['OA'])} on {h['questions']} questions; "
            f"thresholds in {report['thresholds_file']}")


def run_args(args: argparse.Namespace) -> int:
    """Calibrate from parsed arguments and print a one-line summary."""
    report = calibrate(args)
    sys.stdout.write(_summary(report) + "\n")
    return 0


def main(argv: list[str] | None = None, prog: str = "eval/calibrate.py") -> int:
    """Entry point; bad input ends with a one-line message and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_args(args)
    except (GraftVQAError, ValueError, FileExistsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
