"""The evaluation report (``report.json`` and ``report.md``) and the merge of sharded runs.

The report is a pure function of the run's metadata and its prediction records (sorted by question
id), except the fields in :data:`TIMING_FIELDS`; so a resumed or merged run reports the same as an
uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from graft_vqa.interfaces.evaluation.metrics import (
    BINNED_TYPES,
    NUMERIC_TYPES,
    answer_class,
    is_correct,
    normalize_text,
    parse_number,
    prediction_number,
    summarize,
)
from graft_vqa.interfaces.evaluation.runner import PREDICTIONS, TOTAL_TIME, read_predictions
from graft_vqa.config import UNTRAINED_SEED
from graft_vqa.core.errors import DatasetNotFoundError

RUN_META = "run.json"
TIMING_FIELDS: tuple[str, ...] = ("throughput", "timings")  # report keys that vary between identical runs
N_EXAMPLES = 3  # example questions per failure mode
N_MODES = 10  # failure modes listed


def _integer(x: float | None) -> str:
    return "no number" if x is None else str(math.floor(x + 0.5))


def _mode_of(r: dict[str, Any], layout: str) -> str:
    """A short name for why record ``r`` is wrong: RSVQA classes for the binned (layout, type) pairs,
    rounded integers for exactly scored numbers (RSVQA-HR counts), normalised text otherwise."""
    t = r["type"]
    if r.get("failed"):
        first = (r.get("error") or "").strip().splitlines()[:1]
        return f"{t}: program failed ({r['status']}): {(first[0] if first else '')[:80]}"
    if (layout, t) in BINNED_TYPES:
        p = answer_class(r.get("prediction", ""), r.get("value")) or "no number"
        return f"{t}: truth {answer_class(r['gt'])}, predicted {p}"
    if t in NUMERIC_TYPES:
        p = prediction_number(r.get("prediction", ""), r.get("value"))
        return f"{t}: truth {_integer(parse_number(r['gt']))}, predicted {_integer(p)}"
    return f"{t}: truth {normalize_text(r['gt'])!r}, predicted {normalize_text(r['prediction'])!r}"


def rescore(records: Iterable[dict[str, Any]], layout: str) -> list[dict[str, Any]]:
    """Copies of ``records`` whose ``correct`` is recomputed from (layout, type, gt, prediction, value,
    failed) with :func:`eval.metrics.is_correct`; the stored field is informational only, so a metric
    fix re-scores old runs and merged shards are scored alike."""
    return [{**r, "correct": is_correct(layout, r["type"], r["gt"], r.get("prediction", ""), r.get("value"),
                                        failed=bool(r.get("failed")))} for r in records]


def failure_modes(records: Iterable[dict[str, Any]], layout: str, top: int = N_MODES) -> list[dict[str, Any]]:
    """The most frequent ways questions were answered wrongly, with example questions (lowest ids)."""
    modes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["qid"]):
        if not r["correct"]:
            modes[_mode_of(r, layout)].append(r)
    ranked = sorted(modes.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [{"mode": m, "n": len(rs),
             "examples": [{"qid": r["qid"], "img_id": r["img_id"], "question": r["question"], "gt": r["gt"],
                           "prediction": r["prediction"]} for r in rs[:N_EXAMPLES]]}
            for m, rs in ranked]


def _failures(records: list[dict[str, Any]], limit: int = 50) -> dict[str, Any]:
    failed = [r for r in records if r.get("failed")]
    by_status: dict[str, int] = defaultdict(int)
    for r in failed:
        by_status[r["status"]] += 1
    return {"n": len(failed), "by_status": dict(sorted(by_status.items())),
            "listed": [{k: r[k] for k in ("qid", "img_id", "type", "question", "status", "error")}
                       for r in failed[:limit]]}


def _per_worker(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Questions, images, answering seconds and questions per second of each worker (``key`` "worker":
    one process, "node": one machine), from the records' ``worker`` (records without one: "local")."""
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        w = r.get("worker") or {"node": "local"}
        name = str(w.get("node")) if key == "node" else f"{w.get('node')}/{w.get('pid')}"
        g = groups.setdefault(name, {"host": w.get("host"), "questions": 0, "images": set(), "answer_s": 0.0})
        g["questions"] += 1
        g["images"].add(r.get("img_id"))
        total = (r.get("timings") or {}).get(TOTAL_TIME)
        g["answer_s"] += float(total) if isinstance(total, (int, float)) else 0.0
    for g in groups.values():
        g["images"] = len(g["images"])
        g["questions_per_s"] = g["questions"] / g["answer_s"] if g["answer_s"] > 0 else None
    return dict(sorted(groups.items()))


def _timings(records: list[dict[str, Any]], wall_s: float | None,
             execution: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    stages: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for k, v in (r.get("timings") or {}).items():
            if isinstance(v, (int, float)):
                stages[k].append(float(v))
    means = {k: sum(v) / len(v) for k, v in sorted(stages.items())}
    busy = sum(stages.get(TOTAL_TIME, []))
    throughput = {"questions": len(records), "answer_s": busy,
                  "questions_per_s": len(records) / busy if busy > 0 else None, "wall_s": wall_s,
                  "execution": execution,
                  "per_worker": _per_worker(records, "worker"), "per_node": _per_worker(records, "node")}
    return throughput, means


def build_report(meta: dict[str, Any], records: Iterable[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    """The report of a run: accounting, RSVQA metrics, failures, failure modes and throughput."""
    expected = sorted(meta["expected_qids"])
    by_qid = {int(r["qid"]): r for r in records}
    layout = str(meta.get("layout"))
    recs = rescore([by_qid[q] for q in expected if q in by_qid], layout)
    missing = [q for q in expected if q not in by_qid]
    throughput, means = _timings(recs, wall_s, meta.get("execution"))
    return {
        "benchmark": meta.get("benchmark", "rsvqa"),
        "dataset": {k: meta.get(k) for k in ("layout", "split", "protocol", "types", "limit")},
        "system": meta.get("system", {}),
        "accounting": {"expected": len(expected), "answered": len(recs), "missing": len(missing),
                       "missing_qids": missing[:50], "complete": not missing},
        "metrics": summarize(recs, meta.get("types")),
        "failures": _failures(recs),
        "failure_modes": failure_modes(recs, layout),
        "untrained": {"n": sum(bool(r.get("untrained")) for r in recs), "of": len(recs), "seed": UNTRAINED_SEED},
        "throughput": throughput,
        "timings": means,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def untrained_line(rep: dict[str, Any]) -> str:
    """One sentence saying how many answers came from random weights ("" when none did)."""
    u = rep.get("untrained") or {}
    if not u.get("n"):
        return ""
    return (f"{u['n']} of {u['of']} answers came from random weights (allow_untrained, seed {u['seed']}): "
            "these scores are NOT meaningful; put the GRAFT and CLIP weights in place and run again.")


def to_markdown(rep: dict[str, Any]) -> str:
    """The report as a Markdown page (its first line says so when random weights answered)."""
    d, m, acc = rep["dataset"], rep["metrics"], rep["accounting"]
    untrained = untrained_line(rep)
    lines = [f"> **UNTRAINED WEIGHTS.** {untrained}", ""] if untrained else []
    lines += [f"# RSVQA-{str(d['layout']).upper()} {d['split']} ({d['protocol']} protocol)", "",
             f"Questions: {acc['answered']} answered of {acc['expected']} expected"
             + ("" if acc["complete"] else f" (**{acc['missing']} missing**)") + ".", "",
             "| type | n | correct | accuracy % |", "|---|---:|---:|---:|"]
    for t, v in m["per_type"].items():
        lines.append(f"| {t} | {v['n']} | {v['correct']} | {_pct(v['accuracy'])} |")
    lines += [f"| **AA** | | | **{_pct(m['AA'])}** |", f"| **OA** | {m['n']} | {m['correct']} | **{_pct(m['OA'])}** |", ""]
    if m.get("count"):
        c = m["count"]
        lines.append(f"Count: exact accuracy {_pct(c['exact_accuracy'])} %, MAE {_num(c['mae'])}, "
                     f"RMSE {_num(c['rmse'])} ({c['n_numeric']} of {c['n']} numeric).")
    if m.get("area"):
        a = m["area"]
        lines.append(f"Area: MAE {_num(a['mae'])} m2 ({a['n_numeric']} of {a['n']} numeric).")
    f = rep["failures"]
    lines += ["", f"## Failed programs: {f['n']} (counted as wrong)", ""]
    lines += [f"- {s}: {n}" for s, n in f["by_status"].items()]
    lines += ["", "## Worst failure modes", ""]
    for mode in rep["failure_modes"]:
        lines.append(f"- **{mode['mode']}**: {mode['n']}")
        lines += [f"  - q{e['qid']} (image {e['img_id']}): {e['question']} -> {e['prediction']!r} (truth {e['gt']!r})"
                  for e in mode["examples"]]
    t = rep["throughput"]
    lines += ["", "## Throughput", "",
              f"{t['questions']} questions, {_num(t['answer_s'])} s answering, "
              f"{_num(t['questions_per_s'])} questions/s; wall {_num(t['wall_s'])} s.", ""]
    lines += [f"- {k}: {1000 * v:.1f} ms mean" for k, v in rep["timings"].items()]
    for key, title in (("per_node", "node"), ("per_worker", "worker")):
        groups = t.get(key) or {}
        if len(groups) > 1:
            lines += ["", f"| {title} | host | images | questions | answering s | questions/s |", "|---|---|---:|---:|---:|---:|"]
            lines += [f"| {name} | {g['host']} | {g['images']} | {g['questions']} | {_num(g['answer_s'])} | "
                      f"{_num(g['questions_per_s'])} |" for name, g in groups.items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, rep: dict[str, Any]) -> None:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (atomically)."""
    for name, text in (("report.json", json.dumps(rep, indent=2, sort_keys=True)), ("report.md", to_markdown(rep))):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out_dir / name)


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The metadata and prediction records of one run folder."""
    meta_path = Path(run_dir) / RUN_META
    if not meta_path.is_file():
        raise DatasetNotFoundError(f"{run_dir} is not an eval run folder: {RUN_META} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return meta, read_predictions(Path(run_dir) / PREDICTIONS)


def merge_runs(run_dirs: list[Path]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Combine the shards of one evaluation: same data set and system, union of questions and records."""
    metas, records = [], {}
    for d in run_dirs:
        meta, recs = load_run(d)
        metas.append(meta)
        records.update(recs)
    keys = ("layout", "split", "protocol", "types", "limit", "system")
    for m in metas[1:]:
        diff = [k for k in keys if m.get(k) != metas[0].get(k)]
        if diff:
            raise ValueError(f"cannot merge runs that differ in {', '.join(diff)}")
    counts = sorted({m.get("shard", [0, 1])[1] for m in metas})
    if len(counts) > 1:
        raise ValueError(f"cannot merge shards of different splits (N = {', '.join(map(str, counts))}): "
                         f"merge the shards of one --shard I/N run")
    n = counts[0]
    have = sorted({m.get("shard", [0, 1])[0] for m in metas})
    merged = {k: metas[0].get(k) for k in ("benchmark", *keys)}
    merged["shard"] = [0, 1] if have == list(range(n)) else None
    merged["shards_merged"] = have
    merged["shards_total"] = n
    # the whole selection (before sharding), so questions of missing shards count as missing
    merged["expected_qids"] = sorted({q for m in metas for q in m.get("selection_qids", m["expected_qids"])})
    return merged, records
