"""The LLM planner with a real local model, measured on RSVQA-LR questions against synthetic scenes.

Serves a GGUF model with ``llama_cpp.server`` on 127.0.0.1 (from ``.venv-llm/``, see ``make llm-setup``),
or uses ``--base-url`` for a server you run (Ollama, vLLM, ...). Each question comes from
``../shared/data/rsvqa_lr_sample/`` (presence, count, comp, rural_urban; half of each of the first
three without attributes or relations, half with them) and is asked through the real
``Engine`` against a synthetic scene built for it (``tests/scenes.py``): the truth comes from the
scene's objects, never from RSVQA's answers. The rule planner runs on the same scenes as the
reference. Prints, per planner: valid-program rate, right answer kind, exact on questions without
attributes or relations, exact overall, LLM requests per question, seconds per question.

    make bench-llm                                   # sets up .venv-llm and the model, then runs this
    .venv/bin/python bench/planner_llm.py --gguf PATH [--per-type 20] [--records out.jsonl]
    .venv/bin/python bench/planner_llm.py --base-url http://127.0.0.1:11434/v1 --model qwen2.5-coder:0.5b
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graft_vqa import Engine  # noqa: E402
from graft_vqa.config import EngineConfig, FindConfig  # noqa: E402
from tests.scenes import EXPECTED_KIND, GSD_M, SceneScorer, parse_question, scene_for, truth  # noqa: E402

QUESTIONS = REPO.parent / "shared" / "data" / "rsvqa_lr_sample" / "LR_split_test_questions.json"
log = logging.getLogger("bench.planner_llm")


@dataclass
class Record:
    """One question's outcome."""

    question: str
    type: str
    plain: bool  # no attribute and no relation
    truth: Any
    value: Any = None
    kind: str | None = None
    error: str | None = None
    program: str = ""
    requests: int = 0  # LLM chat requests spent on this question
    prompt_tokens: int = 0  # prompt tokens the server reported (llama.cpp reuses a cached prefix)
    completion_tokens: int = 0  # generated tokens
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def right_kind(self) -> bool:
        return self.valid and self.kind == EXPECTED_KIND[self.type]

    @property
    def exact(self) -> bool:
        return self.right_kind and self.value == self.truth and type(self.value) is type(self.truth)


def sample_questions(per_type: int, seed: int) -> list[str]:
    """Distinct questions: ``per_type`` each of presence, count, comp (half plain) and the rural/urban one."""
    data = json.loads(QUESTIONS.read_text())["questions"]
    distinct: dict[str, str] = {}
    for q in data:
        distinct.setdefault(q["question"].strip(), q["type"])
    rng = random.Random(seed)
    chosen: list[str] = [t for t, kind in distinct.items() if kind == "rural_urban"][:1]
    for kind in ("presence", "count", "comp"):
        texts = sorted(t for t, k in distinct.items() if k == kind)
        plain = [t for t in texts if parse_question(t).plain]
        other = [t for t in texts if not parse_question(t).plain]
        half = per_type // 2
        chosen += rng.sample(plain, min(half, len(plain))) + rng.sample(other, min(per_type - half, len(other)))
    return chosen


def ask_one(planner: Any, question: str, seed: int, config: EngineConfig) -> Record:
    parsed = parse_question(question)
    scene = scene_for(parsed, seed)
    record = Record(question, parsed.type, parsed.plain, truth(parsed, scene))
    engine = Engine(scorer=SceneScorer(scene), planner=planner, config=config)
    before = getattr(planner, "requests", 0)
    tokens = dict(getattr(planner, "tokens", {}))
    started = time.perf_counter()
    answer = engine.ask(scene.image(), question)
    record.seconds = time.perf_counter() - started
    record.requests = getattr(planner, "requests", 0) - before
    after = getattr(planner, "tokens", {})
    record.prompt_tokens = after.get("prompt", 0) - tokens.get("prompt", 0)
    record.completion_tokens = after.get("completion", 0) - tokens.get("completion", 0)
    record.value, record.kind, record.error = answer.value, answer.kind, answer.error
    record.program, record.warnings = answer.program, list(answer.warnings)
    return record


def run_planner(name: str, planner: Any, questions: list[str], config: EngineConfig, seed: int,
                records_out: Any) -> list[Record]:
    records = []
    for i, question in enumerate(questions):
        record = ask_one(planner, question, seed * 100_003 + i, config)
        records.append(record)
        if records_out is not None:
            records_out.write(json.dumps({"planner": name, **asdict(record)}, default=str) + "\n")
            records_out.flush()
        mark = "ok " if record.exact else ("KIND" if not record.right_kind else "val")
        log.info("%s %3d/%d %s %5.1fs %s -> %r (truth %r)%s", name, i + 1, len(questions), mark, record.seconds,
                 question, record.value, record.truth, f" [{record.error[:80]}]" if record.error else "")
    return records


def _fell_back(record: Record) -> bool:
    return any("planner's program instead" in w for w in record.warnings)


def summary(records: list[Record]) -> dict[str, float]:
    def rate(rows: list[Record], attr: str) -> float:
        return 100.0 * sum(getattr(r, attr) for r in rows) / max(1, len(rows))

    plain = [r for r in records if r.plain]
    return {"questions": len(records), "plain": len(plain), "valid_%": rate(records, "valid"),
            "right_kind_%": rate(records, "right_kind"), "exact_plain_%": rate(plain, "exact"),
            "exact_all_%": rate(records, "exact"),
            "fallbacks": sum(_fell_back(r) for r in records),
            "requests_per_q": sum(r.requests for r in records) / max(1, len(records)),
            "completion_tokens_per_q": sum(r.completion_tokens for r in records) / max(1, len(records)),
            "s_per_q": sum(r.seconds for r in records) / max(1, len(records))}


def print_table(results: dict[str, dict[str, float]]) -> None:
    header = ["planner", "questions", "valid %", "right kind %", "exact plain %", "exact all %", "rule fallbacks",
              "LLM requests/q", "generated tokens/q", "s/q"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, s in results.items():
        print(f"| {name} | {s['questions']} ({s['plain']} plain) | {s['valid_%']:.1f} | {s['right_kind_%']:.1f} | "
              f"{s['exact_plain_%']:.1f} | {s['exact_all_%']:.1f} | {s['fallbacks']} | {s['requests_per_q']:.2f} | "
              f"{s['completion_tokens_per_q']:.0f} | {s['s_per_q']:.2f} |")


def _option(text: str) -> tuple[str, Any]:
    key, _, raw = text.partition("=")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", help="GGUF file to serve with llama_cpp.server (default: the cached 0.5B model)")
    parser.add_argument("--base-url", help="use this OpenAI-compatible server instead of starting one")
    parser.add_argument("--model", default="local-model", help="model name sent to the server")
    parser.add_argument("--per-type", type=int, default=40, help="questions per type (presence, count, comp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planners", default="rules,openai", help="comma-separated: rules, openai")
    parser.add_argument("--attempts", type=int, default=3, help="EngineConfig.planner_attempts")
    parser.add_argument("--planner-option", action="append", default=[], type=_option, metavar="KEY=VALUE",
                        help="extra OpenAIPlanner argument (repeatable), e.g. samples=3")
    parser.add_argument("--engine-option", action="append", default=[], type=_option, metavar="KEY=VALUE",
                        help="extra EngineConfig field (repeatable), e.g. planner_samples=3, planner_fallback=True")
    parser.add_argument("--cache-dir", help="program cache (default: a fresh temporary folder, so nothing is reused)")
    parser.add_argument("--records", help="write one JSON line per question here")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama_cpp.server context size")
    parser.add_argument("--threads", type=int, default=2, help="llama_cpp.server threads")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every question")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `kill` still stops the server we started
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("graft_vqa").setLevel(logging.ERROR)

    questions = sample_questions(args.per_type, args.seed)
    names = [n.strip() for n in args.planners.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-llm-programs-") as tmp:
        config = EngineConfig(gsd_m=GSD_M, find=FindConfig(refine="none"), planner_attempts=args.attempts,
                              cache_dir=args.cache_dir or tmp, **dict(args.engine_option))
        records_out = open(args.records, "w", encoding="utf-8") if args.records else None
        results: dict[str, dict[str, float]] = {}
        try:
            if "rules" in names:
                from graft_vqa.planner import RulePlanner

                results["rules"] = summary(run_planner("rules", RulePlanner(), questions, config, args.seed,
                                                       records_out))
            if "openai" in names:
                records = run_llm(args, questions, config, records_out)
                results[f"openai:{args.model}"] = summary(records)
                if any(_fell_back(r) for r in records):  # what the LLM alone did: a fallback answer counts as failed
                    alone = [replace(r, error="fell back to rules") if _fell_back(r) else r for r in records]
                    results[f"openai:{args.model}, fallback answers counted as failures"] = summary(alone)
        finally:
            if records_out is not None:
                records_out.close()
    print(f"RSVQA-LR sample, {len(questions)} distinct questions, synthetic scenes (seed {args.seed}), "
          f"planner_attempts={args.attempts}, planner options={dict(args.planner_option)}, "
          f"engine options={dict(args.engine_option)}")
    print_table(results)


def run_llm(args: argparse.Namespace, questions: list[str], config: EngineConfig, records_out: Any) -> list[Record]:
    from graft_vqa.planner import OpenAIPlanner

    options = {"timeout": 600.0, **dict(args.planner_option)}  # a loaded CPU can take minutes for a first prompt

    def go(base_url: str) -> list[Record]:
        planner = OpenAIPlanner(base_url=base_url, model=args.model, api_key="not-needed", **options)
        return run_planner(f"openai:{args.model}", planner, questions, config, args.seed, records_out)

    if args.base_url:
        return go(args.base_url)
    from tests.llm_server import LlamaServer

    gguf = args.gguf or _default_gguf()
    with LlamaServer(gguf, alias=args.model, n_ctx=args.n_ctx, n_threads=args.threads) as server:
        return go(server.base_url)


def _default_gguf() -> str:
    sys.path.insert(0, str(REPO / "bench" / "llm"))
    from fetch_model import MODELS, cache_dir

    path = cache_dir() / MODELS["qwen2.5-coder-0.5b"].filename
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `make llm-setup` (or python bench/llm/fetch_model.py)")
    return str(path)


if __name__ == "__main__":
    main()
