"""Evaluate graft-vqa on RSVQA: ``python eval/run_vqa.py --benchmark rsvqa --data-root DIR --out DIR``.

The data folder is ``--data-root``, else the environment variable ``GRAFT_VQA_RSVQA_ROOT``; it holds
one official release (RSVQA-LR or RSVQA-HR, detected from the file names). Every question is
appended to ``OUT/predictions.jsonl`` as it finishes; ``--resume`` continues a killed run;
``--ray [ADDRESS]`` answers the images on the workers of a Ray cluster (``--workers N``);
``--shard I/N`` runs one of N image-disjoint parts (for plain job arrays);
``python eval/run_vqa.py merge OUT1 OUT2 ... --out M`` combines shards. ``OUT/report.json`` and
``OUT/report.md`` hold the RSVQA metrics.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from graft_vqa.interfaces.evaluation.metrics import GEOCHAT_SPLIT, GEOCHAT_TYPES
from graft_vqa.interfaces.evaluation.report import RUN_META, build_report, merge_runs, untrained_line, write_report
from graft_vqa.interfaces.evaluation.rsvqa import LAYOUTS, detect_layout, load_rsvqa
from graft_vqa.interfaces.evaluation.runner import (
    PREDICTIONS,
    Selection,
    System,
    parse_shard,
    read_predictions,
    run,
    select,
)
from graft_vqa.interfaces.advice import for_cli, install_cli_logging
from graft_vqa.interfaces.options import (
    add_engine_options,
    add_ray_options,
    check_ray_options,
    engine_config,
    given_options,
    make_planner,
)
from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import ConfigError, GraftVQAError
from graft_vqa.thresholds import load_thresholds

log = logging.getLogger(__name__)
DATA_ROOT_ENV = "GRAFT_VQA_RSVQA_ROOT"
# RSVQA-LR is Sentinel-2 at 10 m (GRAFT's Sentinel model); RSVQA-HR is USGS aerial at 15 cm (closest: NAIP).
LAYOUT_WEIGHTS = {"lr": "graft-sentinel-patch", "hr": "graft-naip-patch"}


def build_parser(prog: str = "eval/run_vqa.py") -> argparse.ArgumentParser:
    """The ``run`` command line (``prog``: how the user called it, for usage and help)."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog=f"Subcommand: {prog} merge RUN_DIR... --out DIR combines shards.")
    p.add_argument("--benchmark", choices=["rsvqa"], default="rsvqa", help="benchmark (only rsvqa)")
    p.add_argument("--data-root", default=os.environ.get(DATA_ROOT_ENV),
                   help=f"folder of the RSVQA release (default: ${DATA_ROOT_ENV})")
    p.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto", help="release layout (default: detect)")
    p.add_argument("--split", default=None, help="split (default: test; test_phili for HR under --protocol geochat)")
    p.add_argument("--protocol", choices=["full", "geochat"], default="full",
                   help="full: all question types; geochat: the reduced protocol of LLM papers")
    p.add_argument("--types", default=None, help="comma-separated question types (default: the protocol's)")
    p.add_argument("--limit", type=int, default=None, help="first N selected questions (by id)")
    p.add_argument("--shard", default="0/1", help="I/N: run the images with img_id %% N == I")
    p.add_argument("--out", required=True, type=Path, help="output folder (predictions.jsonl, report.json/md)")
    p.add_argument("--resume", action="store_true", help="skip questions already in OUT/predictions.jsonl")
    add_engine_options(p)
    p.add_argument("--answerer", default=None, metavar="MODULE:FACTORY",
                   help="evaluate another system: FACTORY(args) returns an object with ask(image, question)")
    add_ray_options(p)
    p.add_argument("--no-fsync", action="store_true", help="flush but do not fsync each prediction line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def build_engine(args: argparse.Namespace) -> Any:
    """A :class:`graft_vqa.Engine` configured from the command line (the same options as ``graft-vqa ask``)."""
    from graft_vqa.engine import Engine

    return Engine(planner=make_planner(args), config=run_config(args))


def run_config(args: argparse.Namespace) -> EngineConfig:
    """The engine settings of this run: the options given, GRAFT weights for the release's imagery."""
    return engine_config(args, graft_weights=args.graft_weights)


def default_loader(path: Path, gsd_m: float) -> Any:
    """Load a tile with the release's ground sample distance (RSVQA images are not georeferenced)."""
    from graft_vqa.core.tiles import load_tile
    return load_tile(path, gsd_m=gsd_m)


def build_system(args: argparse.Namespace) -> tuple[Any, Callable[[Path, float], Any]]:
    """The answerer and image loader: ``--answerer`` when given, else the graft-vqa engine."""
    if args.answerer:
        module, _, name = args.answerer.partition(":")
        answerer = getattr(importlib.import_module(module), name or "make_answerer")(args)
    else:
        answerer = build_engine(args)
    return answerer, getattr(answerer, "load_image", None) or default_loader


def worker_system(args: argparse.Namespace, layout: str) -> System:
    """The system one Ray worker builds once: the engine's models load there, when the worker starts (so
    missing weights stop the run before any question), never in the driver."""
    answerer, loader = build_system(args)
    for part in ("scorer", "refiner"):  # the engine's lazily built models, built now
        getattr(answerer, part, None)
    return System(answerer, loader, layout)


def system_meta(args: argparse.Namespace) -> dict[str, Any]:
    """What identifies the evaluated system (a resumed run must match it): the planner, the
    ``--answerer`` and every engine setting, named as in :class:`~graft_vqa.config.EngineConfig`."""
    meta = {k: getattr(args, k) for k in ("planner", "base_url", "model", "answerer")}
    settings = run_config(args).settings()
    settings.pop("cache_dir", None)  # where programs are cached does not change the answers
    meta.update(settings)
    if settings.get("thresholds"):  # which thresholds file, by content: another file is another system
        table = load_thresholds(settings["thresholds"])
        meta["thresholds_file"] = {"path": str(Path(settings["thresholds"]).resolve()),
                                   "sha256": hashlib.sha256(Path(settings["thresholds"]).read_bytes()).hexdigest(),
                                   "created": table.record.get("created"), "weights_id": table.weights_id}
    return meta


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two JSON-like values (``system.threshold``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _check_resume(meta_path: Path, meta: dict[str, Any]) -> None:
    old = json.loads(meta_path.read_text(encoding="utf-8"))
    keys = ("layout", "split", "protocol", "types", "limit", "shard", "system", "expected_qids")
    diff = [d for k in keys for d in _differences(old.get(k), meta.get(k), f"{k}.")]
    if diff:
        shown = ", ".join(f"{d} (was {_lookup(old, d)!r}, now {_lookup(meta, d)!r})" if not d.endswith("qids")
                          else d for d in diff[:6])
        raise ValueError(f"--resume: {meta_path.parent} was run with different settings: {shown}; "
                         "pass the same options, or use another --out")


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _selected_types(text: str | None, layout: str, protocol: str) -> tuple[str, ...]:
    """The question types of ``--types`` (default: the protocol's); unknown or no types are an error."""
    if not text:
        return GEOCHAT_TYPES[layout] if protocol == "geochat" else LAYOUTS[layout].types
    types = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    valid = LAYOUTS[layout].types
    unknown = [t for t in types if t not in valid]
    if unknown or not types:
        raise ValueError(f"--types {text!r}: {'unknown type(s) ' + ', '.join(unknown) if unknown else 'no type'}"
                         f" for RSVQA-{layout.upper()}; valid types are {', '.join(valid)}")
    return types


def prepare_out(out: Path) -> list[Path]:
    """Check ``--out`` before any work and create it; returns the folders made here, top-most first.

    Raises:
        ConfigError: ``out`` is a file, lies under a file, cannot be created or is not writable (one line).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder (new or existing) for the run's outputs")
    made, probe = [], out
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"--out {out}: {probe} is a file, so no folder can be made under it; pass another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        _remove_folders(made[::-1])
        raise ConfigError(f"--out {out} cannot be written ({exc.strerror or exc}); pass a folder you can write to") \
            from None
    return made[::-1]


def _remove_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (top-most first), deepest first, where empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def _forget_unanswered(out: Path, made: list[Path], new_files: list[Path]) -> None:
    """After a run that failed before its first answer: remove what it wrote, so it leaves nothing behind
    (no empty predictions.jsonl that a re-run would have to --resume)."""
    predictions = out / PREDICTIONS
    if predictions.is_file() and predictions.stat().st_size > 0:
        return
    for path in new_files:
        path.unlink(missing_ok=True)
    _remove_folders(made)


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or resume) one evaluation and write its report."""
    if not args.data_root:
        raise ValueError(f"pass --data-root DIR (the RSVQA release folder) or set ${DATA_ROOT_ENV}")
    check_ray_options(args)
    made = prepare_out(args.out)
    new_files = [p for p in (args.out / RUN_META, args.out / PREDICTIONS) if not p.exists()]
    try:
        return _run(args)
    except BaseException:
        _forget_unanswered(args.out, made, new_files)
        raise


def _run(args: argparse.Namespace) -> int:
    layout = detect_layout(Path(args.data_root)).name if args.layout == "auto" else args.layout
    split = args.split or (GEOCHAT_SPLIT[layout] if args.protocol == "geochat" else "test")
    types = _selected_types(args.types, layout, args.protocol)
    if args.limit is not None and args.limit <= 0:
        raise ValueError(f"--limit must be a positive number of questions, got {args.limit}")
    # GRAFT trained on the release's kind of imagery, unless --graft-weights says otherwise
    args.graft_weights = given_options(args).get("graft_weights", LAYOUT_WEIGHTS[layout])
    data = load_rsvqa(args.data_root, split, layout)
    shard = parse_shard(args.shard)
    questions = select(data.questions, Selection(types=types, limit=args.limit, shard=shard))
    whole = questions if shard == (0, 1) else select(data.questions, Selection(types=types, limit=args.limit))
    cluster = spec = None
    if args.ray is not None:
        cluster, spec = _join_cluster(args)  # may set args.device (one worker per GPU)
    try:
        meta = {"benchmark": args.benchmark, "data_root": str(Path(args.data_root).resolve()), "layout": layout,
                "split": split, "protocol": args.protocol, "types": list(types), "limit": args.limit,
                "shard": list(shard), "system": system_meta(args), "expected_qids": [q.qid for q in questions],
                "selection_qids": [q.qid for q in whole]}
        meta_path = args.out / RUN_META
        if args.resume and meta_path.is_file():
            _check_resume(meta_path, meta)
        elif (args.out / PREDICTIONS).exists() and not args.resume:
            raise FileExistsError(f"{args.out / PREDICTIONS} exists: pass --resume to continue, or another --out")
        stats = _run_questions(args, data, questions, meta, meta_path, cluster, spec)
    finally:
        if cluster is not None:
            from graft_vqa.distributed import disconnect

            disconnect(cluster)
    rep = build_report(meta, read_predictions(args.out / PREDICTIONS).values(), wall_s=stats["wall_s"])
    write_report(args.out, rep)
    _summary(rep, args.out)
    return 0 if rep["accounting"]["complete"] else 1


def _join_cluster(args: argparse.Namespace) -> tuple[Any, Any]:
    """Join (or start) the Ray cluster and size the workers; the workers' device goes into ``args``."""
    from graft_vqa.distributed import connect, worker_spec  # imports ray: only with --ray

    cluster = connect(args.ray, verbose=args.verbose)
    spec, device = worker_spec(cluster, workers=args.workers, cpus=args.worker_cpus,
                               device=given_options(args).get("device"))
    args.device = device
    return cluster, spec


def _run_questions(args: argparse.Namespace, data: Any, questions: list, meta: dict[str, Any], meta_path: Path,
                   cluster: Any, spec: Any) -> dict[str, Any]:
    """Answer the questions here, or on the cluster's workers; run.json says where."""
    if cluster is None:
        answerer, loader = build_system(args)
        meta["execution"] = {"mode": "local", "workers": 1}
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
        return run(data, questions, answerer, args.out, load_image=loader, resume=args.resume,
                   progress=not args.no_progress, fsync=not args.no_fsync)
    from graft_vqa.interfaces.evaluation.cluster import RayExecutor  # imports ray: only with --ray

    executor = RayExecutor(functools.partial(worker_system, args, data.layout.name), spec)
    try:
        workers = executor.start()
        meta["execution"] = {"mode": "ray", **cluster.describe(), "workers": len(workers),
                             "worker_cpus": spec.cpus, "worker_gpus": spec.gpus,
                             "workers_start_s": round(executor.pool.start_s or 0.0, 3)}
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
        return run(data, questions, None, args.out, resume=args.resume, progress=not args.no_progress,
                   fsync=not args.no_fsync, executor=executor)
    finally:
        executor.close()


def cmd_merge(argv: list[str], prog: str = "eval/run_vqa.py") -> int:
    """``merge RUN_DIR... --out DIR``: one report from the shards of a run."""
    p = argparse.ArgumentParser(prog=f"{prog} merge", description="combine sharded runs into one report")
    p.add_argument("runs", nargs="+", type=Path, help="run folders (each with run.json and predictions.jsonl)")
    p.add_argument("--out", required=True, type=Path, help="folder for the merged predictions and report")
    args = p.parse_args(argv)
    prepare_out(args.out)
    meta, records = merge_runs(args.runs)
    if meta["shard"] is None:
        log.warning("merging shards %s of %d: the others are missing", meta["shards_merged"], meta["shards_total"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RUN_META).write_text(json.dumps(meta), encoding="utf-8")
    with open(args.out / PREDICTIONS, "w", encoding="utf-8") as f:
        for qid in sorted(records):
            f.write(json.dumps(records[qid], sort_keys=True) + "\n")
    rep = build_report(meta, records.values())
    write_report(args.out, rep)
    _summary(rep, args.out)
    return 0 if rep["accounting"]["complete"] else 1


def _summary(rep: dict[str, Any], out: Path) -> None:
    m, acc = rep["metrics"], rep["accounting"]
    fmt = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    per = ", ".join(f"{t} {fmt(v['accuracy'])}" for t, v in m["per_type"].items())
    if rep.get("untrained", {}).get("n"):
        sys.stdout.write(f"UNTRAINED: {untrained_line(rep)}\n")
    sys.stdout.write(f"{acc['answered']}/{acc['expected']} questions; {per}; AA {fmt(m['AA'])}; OA {fmt(m['OA'])}; "
                     f"failed programs {rep['failures']['n']}; report in {out / 'report.md'}\n")


def main(argv: list[str] | None = None, prog: str = "eval/run_vqa.py") -> int:
    """Entry point; bad input ends with a one-line message and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv or "--verbose" in argv
    # library messages (weights advice, the SAM warning) in CLI words: flags, not Python names
    install_cli_logging(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] == "merge":
            return cmd_merge(argv[1:], prog)
        return cmd_run(build_parser(prog).parse_args(argv))
    except (GraftVQAError, ValueError, OSError) as exc:  # FileExistsError is an OSError
        sys.stderr.write(f"error: {for_cli(str(exc))}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
