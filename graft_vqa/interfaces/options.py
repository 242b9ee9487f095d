"""Options for every interface (``graft-vqa ask``, ``eval``, ``app``, ``segment``, ``index``, ``search``,
``classify``), generated from the config dataclasses.

Each CLI-exposed field of :class:`~graft_vqa.config.EngineConfig` and
:class:`~graft_vqa.config.FindConfig` (the engine), or of :class:`~graft_vqa.config.EmbedConfig` and
:class:`~graft_vqa.config.ChipConfig` (search and classification), becomes ``--field-name`` with the
field's help and default;
options the user did not pass are not set, so the dataclass stays the one source of defaults and
:func:`given_options` tells what the user chose (eval uses it to pick weights per benchmark).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Literal, get_args, get_origin

from graft_vqa import weights
from graft_vqa.config import (
    ChipConfig, EmbedConfig, EngineConfig, FindConfig, SceneConfig, apply_options, cli_fields,
)
from graft_vqa.core.errors import ConfigError

PLANNERS = ("rules", "openai")
_GROUPS = ((EngineConfig, "models, weights and sandbox"), (FindConfig, "find"),
           (SceneConfig, "scenes (rasters above --scene-pixels)"))
EMBED_GROUPS = ((EmbedConfig, "image-level model and weights"), (ChipConfig, "chips"))
Groups = tuple[tuple[type, str], ...]


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def flag(name: str) -> str:
    """The command-line flag of a config field: ``gsd_m`` -> ``--gsd-m``."""
    return "--" + name.replace("_", "-")


def _base_type(hint: Any) -> Any:
    """``float | None`` -> float; ``Literal[...]`` stays as is."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def _choices(f: dataclasses.Field, hint: Any) -> tuple[str, ...] | None:
    if f.metadata.get("choices"):
        return tuple(f.metadata["choices"])
    if f.name == "graft_weights":
        return tuple(n for n, s in weights.WEIGHTS.items() if s.kind == "graft")
    if get_origin(hint) is Literal:
        return tuple(get_args(hint))
    return None


def _add_field(group: argparse._ArgumentGroup, cls: type, f: dataclasses.Field) -> None:
    hint = _base_type(typing.get_type_hints(cls)[f.name])
    default = f.default if f.default is not dataclasses.MISSING else None
    text = f.metadata.get("help", "")
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        group.add_argument(flag(f.name), help=text, **kwargs)
        return
    choices = _choices(f, hint)
    if choices:
        kwargs["choices"] = list(choices)
    elif hint is float:
        kwargs["type"] = positive_float if f.name in ("gsd_m", "sandbox_timeout_s") else float
    elif hint is int:
        kwargs["type"] = int
    if f.metadata.get("metavar"):
        kwargs["metavar"] = f.metadata["metavar"]
    shown = "" if default is None else f" (default: {default})"
    group.add_argument(flag(f.name), help=text + shown, **kwargs)


def add_config_options(parser: argparse.ArgumentParser, groups: Groups = _GROUPS) -> None:
    """One option per CLI field of each config class in ``groups``, one argument group per class."""
    for cls, title in groups:
        group = parser.add_argument_group(title)
        for f in cli_fields(cls):
            _add_field(group, cls, f)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The engine settings and the planner options, shared by ``ask``, ``eval`` and ``app``."""
    add_config_options(parser, _GROUPS)
    plan = parser.add_argument_group("planner")
    plan.add_argument("--planner", default="rules", choices=list(PLANNERS),
                      help="offline rule planner or an OpenAI-compatible LLM (default: %(default)s)")
    plan.add_argument("--base-url", help="OpenAI-compatible endpoint (else $OPENAI_BASE_URL)")
    plan.add_argument("--model", help="LLM name (else $GRAFT_VQA_MODEL)")
    plan.add_argument("--structured", default="off", choices=["off", "auto", "json_schema", "json_object"],
                      help="LLM structured output: ask for {\"program\": ...} under a JSON schema; auto uses the "
                           "first form the server takes (default: %(default)s)")
    plan.add_argument("--fewshots", type=int, metavar="N",
                      help="LLM prompt: the N examples most similar to the question (default: all)")
    plan.add_argument("--llm-timeout", type=float, default=60.0, metavar="S",
                      help="LLM request timeout in seconds; a local model's first prompt can take minutes on a "
                           "CPU (default: %(default)s)")


def given_options(args: argparse.Namespace, groups: Groups = _GROUPS) -> dict[str, Any]:
    """The settings of ``groups`` (default: the engine's) the user passed (flat field names), nothing else."""
    names = {f.name for cls, _ in groups for f in cli_fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def engine_config(args: argparse.Namespace, **overrides: Any) -> EngineConfig:
    """An :class:`EngineConfig` from the parsed options (defaults from the dataclasses), plus ``overrides``."""
    options = {"cache_dir": str(weights.home() / "programs"), **given_options(args), **overrides}
    return EngineConfig.from_options(**options)


def embed_configs(args: argparse.Namespace) -> tuple[EmbedConfig, ChipConfig]:
    """The :class:`EmbedConfig` and :class:`ChipConfig` of the parsed options (defaults from the dataclasses)."""
    return apply_options(given_options(args, EMBED_GROUPS), EmbedConfig(), ChipConfig())


def make_planner(args: argparse.Namespace) -> Any:
    """``None`` (the engine's rule planner) or an :class:`OpenAIPlanner` from the arguments."""
    if args.planner == "rules":
        return None
    from graft_vqa.planner import OpenAIPlanner

    return OpenAIPlanner(base_url=args.base_url, model=args.model, structured=getattr(args, "structured", "off"),
                         fewshots=getattr(args, "fewshots", None), timeout=getattr(args, "llm_timeout", 60.0))


def ray_address(text: str) -> str:
    """argparse type of ``--ray``: ``host:port``, ``ray://host:port``, ``auto`` or ``local``; anything else
    (a tile path that ``--ray`` took as its address) is refused before the command runs."""
    host, _, port = text.rpartition(":")
    if text in ("auto", "local") or text.startswith("ray://") or (host and port.isdigit()):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a cluster address: give host:port (the head node's), auto (the cluster 'ray start' made "
        f"on this machine) or local; write --ray last or as --ray=ADDRESS so that it does not take the next argument")


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]``, ``--workers``, ``--worker-cpus``: run on a Ray cluster (docs/distributed.md)."""
    group = parser.add_argument_group("Ray cluster (optional extra: pip install 'graft-vqa[distributed]')")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS", type=ray_address,
                       help="run on a Ray cluster: host:port of its head, auto (the cluster 'ray start' made on "
                            "this machine, or $RAY_ADDRESS), or nothing to start a local Ray for this run")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray workers, each holding the models once (default: one per GPU of the cluster, "
                            "else one per CPU)")
    group.add_argument("--worker-cpus", type=positive_float, default=1.0, metavar="C",
                       help="CPUs per Ray worker, also its torch threads (default: 1)")


def check_ray_options(args: argparse.Namespace) -> None:
    """``--workers``/``--worker-cpus`` only with ``--ray``, and at least one worker."""
    if args.ray is None and (args.workers is not None or args.worker_cpus != 1.0):
        raise ConfigError("--workers and --worker-cpus need --ray (run on a Ray cluster)")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
