"""The calibration report (``report.json``, ``report.md``) and the thresholds file's record."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _acc(right: int, n: int) -> str:
    return "-" if not n else f"{100 * right / n:.1f} ({right}/{n})"


def to_markdown(rep: dict[str, Any]) -> str:
    """The report as a Markdown page."""
    b, s, h = rep["benchmark"], rep["search"], rep["heldout"]
    glob = rep["global"]
    lines = [f"# Calibration on {b['name'].upper()}-{str(b['layout']).upper()} {b['split']}", "",
             f"{b['questions']} questions on {b['tiles']} tiles: {b['search_tiles']} search tiles, "
             f"{b['heldout_tiles']} held-out tiles (by tile, seed {b['seed']}). Model: `{rep['model']['weights_id']}`.",
             f"Thresholds file: `{rep['thresholds_file']}`.", "",
             "## Thresholds", "",
             f"Global: **{glob['mode']} {glob['value']:.4g}**, min area {glob['min_area_m2']:g} m2: "
             f"{_acc(s['correct'], s['questions'])} right on the search tiles "
             f"(the engine's own {s['engine_setting']}: {_acc(s['correct_engine'], s['questions'])}).", "",
             "| concept | questions | threshold | min area m2 | source | search: global -> chosen % |",
             "|---|---:|---|---:|---|---|"]
    for name, c in rep["concepts"].items():
        lines.append(f"| {name} | {c['questions']} | {c['mode']} {c['value']:.4g} | {c['min_area_m2']:g} | "
                     f"{c['source']} | {_acc(c['search_correct_global'], c['questions'])} -> "
                     f"{_acc(c['search_correct'], c['questions'])} |")
    lines += ["", f"## Held-out accuracy ({h['questions']} questions on {h['tiles']} tiles, the sandboxed engine)", "",
              "| type | n | before % | after % |", "|---|---:|---:|---:|"]
    for t, v in h["before"]["per_type"].items():
        after = h["after"]["per_type"].get(t, {})
        lines.append(f"| {t} | {v['n']} | {_pct(v['accuracy'])} | {_pct(after.get('accuracy'))} |")
    lines += [f"| **AA** | | {_pct(h['before']['AA'])} | {_pct(h['after']['AA'])} |",
              f"| **OA** | {h['before']['n']} | {_pct(h['before']['OA'])} | {_pct(h['after']['OA'])} |", "",
              "| concept | n | before % | after % |", "|---|---:|---:|---:|"]
    for name, v in h["per_concept"].items():
        lines.append(f"| {name} | {v['before']['n']} | {_pct(v['before']['accuracy'])} | "
                     f"{_pct(v['after']['accuracy'])} |")
    a = h.get("agreement", {})
    lines += ["", f"The search's in-process answers equal the engine's on {a.get('same', 0)} of {a.get('checked', 0)} "
              "held-out questions it can run." + (f" {a['note']}" if a.get("note") else ""), "",
              "## Search", "",
              f"Modes {', '.join(s['space']['values'])}; {sum(len(v) for v in s['space']['values'].values())} "
              f"thresholds, min areas {s['space']['min_area_m2']} m2; objective types {', '.join(s['objective_types'])}; "
              f"concepts need {s['min_questions']} questions.",
              f"{s['programs_run']} programs run for {s['answers_asked']} answers asked "
              f"({s['questions_not_searchable']} questions not searchable). Score maps: {s['maps']['calls']} scorer "
              f"calls on {s['maps']['tiles']} tiles, {s['maps']['recomputed']} re-scored.", ""]
    lines += [f"- {k}: {v:.1f} s" for k, v in rep["timings"].items()]
    return "\n".join(lines) + "\n"


def write_report(folder: Path, rep: dict[str, Any]) -> None:
    """``report.json`` and ``report.md`` in ``folder`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.json", json.dumps(rep, indent=2, sort_keys=True) + "\n"), ("report.md", to_markdown(rep))):
        tmp = folder / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
