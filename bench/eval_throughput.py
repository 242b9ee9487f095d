"""RSVQA evaluation throughput: caching as built vs. recomputing features and programs per question.

    python bench/eval_throughput.py [--images 4] [--baseline-questions 6] [--graft-model graft-vitb16]

On the real RSVQA-LR sample (../shared/data/rsvqa_lr_sample), with random full-size GRAFT ViT-B/16
weights (``allow_untrained``), SAM off and the rule planner:

* cached: one engine, the evaluation runner (each image loaded once, its questions in a row, so
  the tile's patch features, text embeddings and programs are reused);
* baseline: a fresh engine per question (fresh scorer with empty feature and text caches, fresh
  planner) sharing only the already-built network weights, so model construction is not counted.

Prints questions/s for both, their ratio (target >= 10x) and the time extrapolated to the sample's
5,005 questions (target < 3 min on 2 cores). Model construction time is printed separately.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graft_vqa.interfaces.evaluation.rsvqa import load_rsvqa  # noqa: E402
from graft_vqa.interfaces.evaluation.runner import group_by_image, run  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsvqa_lr_sample"


def _config(graft_model: str):
    from graft_vqa.config import EngineConfig

    text_model = "clip-tiny" if graft_model == "graft-tiny" else "clip-vitb16"
    cfg = EngineConfig(graft_model=graft_model, text_model=text_model, allow_untrained=True)
    cfg.find.refine = "none"
    return cfg


def _fresh_engine(scorer, cfg):
    """An engine with empty caches that shares the built networks' weights."""
    from graft_models.text import TextEncoder
    from graft_vqa.engine import Engine
    from graft_vqa.perception.scorer import GraftScorer
    from graft_vqa.planner import RulePlanner

    text = scorer.text_encoder
    fresh_text = TextEncoder(text.tower, text.tokenizer, name=text.name)
    return Engine(scorer=GraftScorer(scorer.model, fresh_text, template=scorer.template), planner=RulePlanner(),
                  config=cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=SAMPLE, help="RSVQA-LR folder")
    p.add_argument("--images", type=int, default=4, help="images run with caching (all their questions)")
    p.add_argument("--baseline-questions", type=int, default=6, help="questions run with a fresh engine each")
    p.add_argument("--graft-model", default="graft-vitb16", help="GRAFT architecture (random weights)")
    args = p.parse_args()
    os.environ.setdefault("GRAFT_VQA_WEIGHTS", tempfile.mkdtemp(prefix="no-weights-"))  # force random weights

    import torch

    from graft_vqa.engine import Engine
    from graft_vqa.models import build_default_scorer
    from graft_vqa.planner import RulePlanner
    from graft_vqa.core.tiles import load_tile

    data = load_rsvqa(args.data_root, "test")
    total = len(data.questions)
    groups = group_by_image(data.questions)
    cfg = _config(args.graft_model)
    t0 = time.perf_counter()
    scorer, _ = build_default_scorer(cfg)
    build_s = time.perf_counter() - t0
    print(f"torch threads {torch.get_num_threads()}; {args.graft_model} + text tower built in {build_s:.1f} s (random)")

    # cached: the evaluation runner with one engine
    questions = [q for img in list(groups)[: args.images] for q in groups[img]]
    engine = Engine(scorer=scorer, planner=RulePlanner(), config=cfg)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run(data, questions, engine, Path(out), load_image=lambda path, gsd: load_tile(path, gsd_m=gsd),
            progress=False)
        cached_s = time.perf_counter() - t0
    cached_qps = len(questions) / cached_s
    print(f"cached:   {len(questions)} questions on {args.images} images in {cached_s:.1f} s "
          f"= {cached_qps:.1f} questions/s (feature grids computed: {scorer.grid_calls})")

    # baseline: a fresh engine per question (questions spread over the same images)
    sample = questions[:: max(1, len(questions) // args.baseline_questions)][: args.baseline_questions]
    t0 = time.perf_counter()
    for q in sample:
        _fresh_engine(scorer, cfg).ask(load_tile(data.image_path(q.img_id), gsd_m=data.gsd_m[q.img_id]), q.question)
    base_s = time.perf_counter() - t0
    base_qps = len(sample) / base_s
    print(f"baseline: {len(sample)} questions, fresh engine each, in {base_s:.1f} s = {base_qps:.2f} questions/s")

    print(f"ratio cached/baseline: {cached_qps / base_qps:.1f}x (target >= 10x)")
    print(f"extrapolated to {total} questions: cached {total / cached_qps / 60:.1f} min "
          f"(+{build_s:.0f} s model build; target < 3 min), baseline {total / base_qps / 60:.1f} min")


if __name__ == "__main__":
    main()
