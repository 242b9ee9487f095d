"""Evaluation on Ray: questions per second with 1 and 2 workers, the scaling ratio, and Ray's fixed cost.

    .venv/bin/python bench/distributed.py [--images 6] [--graft-model graft-vitb16] [--ray ADDRESS] [--gpu]

On the real RSVQA-LR sample (../shared/data/rsvqa_lr_sample), with random GRAFT weights
(``allow_untrained``), SAM off and the rule planner, the same images (all their questions) are
answered:

* in one process (the plain evaluation runner, torch with this machine's threads), for reference;
* on a local Ray (or the cluster at ``--ray``) with 1 worker, then with 2 workers (1 CPU each, so
  1 torch thread each), through the evaluation's ``RayExecutor``.

Prints, for each: the fixed cost (starting or joining Ray; starting the workers, which build their
models), then questions per second over the answering alone, and the 2-worker/1-worker ratio.
``--gpu`` adds one worker with one GPU (``num_gpus=1``, device cuda) where the cluster has one.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graft_vqa.interfaces.evaluation.rsvqa import load_rsvqa  # noqa: E402
from graft_vqa.interfaces.evaluation.runner import System, group_by_image, run  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "rsvqa_lr_sample"


def make_system(graft_model: str, device: str = "cpu") -> System:
    """One worker's system: an engine with random GRAFT weights, SAM off (built where it runs)."""
    from graft_vqa.config import EngineConfig
    from graft_vqa.core.tiles import load_tile
    from graft_vqa.engine import Engine

    config = EngineConfig.from_options(graft_model=graft_model, allow_untrained=True, refine="none", device=device,
                                       cache_dir=tempfile.mkdtemp(prefix="programs-"))
    engine = Engine(config=config)
    engine.scorer  # noqa: B018 - build the models now (a worker's start-up cost)
    return System(engine, lambda path, gsd: load_tile(path, gsd_m=gsd), "lr")


def _answer(data, questions, executor=None, system=None) -> float:
    """Seconds to answer ``questions`` (records written to a scratch folder, not fsynced)."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        if executor is None:
            run(data, questions, system.answerer, Path(out), load_image=system.load_image, progress=False,
                fsync=False)
        else:
            run(data, questions, None, Path(out), executor=executor, progress=False, fsync=False)
        return time.perf_counter() - t0


def _ray_run(data, questions, args, workers: int, gpus: float = 0.0) -> float:
    import functools

    from graft_vqa.distributed import WorkerSpec
    from graft_vqa.interfaces.evaluation.cluster import RayExecutor

    device = "cuda" if gpus else "cpu"
    spec = WorkerSpec(workers=workers, cpus=1.0, gpus=gpus)
    executor = RayExecutor(functools.partial(make_system, args.graft_model, device), spec)
    try:
        t0 = time.perf_counter()
        infos = executor.start()
        start_s = time.perf_counter() - t0
        seconds = _answer(data, questions, executor)
    finally:
        executor.close()
    qps = len(questions) / seconds
    nodes = len({i["node"] for i in infos})
    print(f"ray, {workers} worker(s){' with a GPU each' if gpus else ''} on {nodes} node(s): workers ready in "
          f"{start_s:.1f} s (models built); {len(questions)} questions in {seconds:.1f} s = {qps:.2f} questions/s")
    return qps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=SAMPLE, help="RSVQA-LR folder")
    p.add_argument("--images", type=int, default=6, help="images answered (all their questions)")
    p.add_argument("--graft-model", default="graft-vitb16", help="GRAFT architecture (random weights)")
    p.add_argument("--ray", default=None, help="cluster address (default: start a local Ray)")
    p.add_argument("--gpu", action="store_true", help="also one worker with one GPU")
    args = p.parse_args()
    os.environ.setdefault("GRAFT_VQA_WEIGHTS", tempfile.mkdtemp(prefix="no-weights-"))  # force random weights

    import torch

    data = load_rsvqa(args.data_root, "test")
    groups = group_by_image(data.questions)
    questions = [q for img in list(groups)[: args.images] for q in groups[img]]
    print(f"{len(questions)} questions on {args.images} images; {args.graft_model} (random), SAM off; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")

    t0 = time.perf_counter()
    system = make_system(args.graft_model)
    build_s = time.perf_counter() - t0
    seconds = _answer(data, questions, system=system)
    local_qps = len(questions) / seconds
    print(f"one process ({torch.get_num_threads()} torch threads): models built in {build_s:.1f} s; "
          f"{seconds:.1f} s = {local_qps:.2f} questions/s")
    del system

    from graft_vqa.distributed import connect, disconnect

    cluster = connect(args.ray)
    print(f"ray {'started' if cluster.started_here else 'joined'} in {cluster.connect_s:.1f} s: "
          f"{len(cluster.nodes)} node(s), {cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs")
    try:
        one = _ray_run(data, questions, args, 1)
        two = _ray_run(data, questions, args, 2)
        print(f"scaling 2 workers / 1 worker: {two / one:.2f}x (ideal 2.0x on 2 free cores); "
              f"2 workers / one process: {two / local_qps:.2f}x")
        if args.gpu and cluster.gpus >= 1:
            _ray_run(data, questions, args, 1, gpus=1.0)
        elif args.gpu:
            print("no GPU in the cluster: --gpu skipped")
    finally:
        disconnect(cluster)


if __name__ == "__main__":
    main()
