"""Engine configuration: dataclasses passed explicitly (nothing is read at import time).

These dataclasses are the one source of every engine setting and its default. Each field is
declared with :func:`setting`, whose help text is the field's comment; the command line
(``graft-vqa ask``, ``eval``, ``app``), the app's settings and the evaluation metadata are all
generated from them, so a setting has one name and one default everywhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from graft_vqa.core.errors import ConfigError

# Names of graft_models.GRAFT_MODELS, without importing torch (tests check that they agree).
GRAFT_MODEL_NAMES: tuple[str, ...] = ("graft-vitb16", "graft-tiny")
SAM_MODELS: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
DEFAULT_CHIP = 224  # chip side for rasters larger than ChipConfig.whole_max (GRAFT's input)
UNTRAINED_SEED = 0  # seed of the random weights that allow_untrained builds: untrained runs repeat exactly
THRESHOLD_MODES: tuple[str, ...] = ("absolute", "relative", "contrast")
REFINE_MODES: tuple[str, ...] = ("sam", "none")
CLIP_LOGIT_SCALE = 100.0  # CLIP's learned temperature, exp(4.6052): the softmax scale of contrast mode


def setting(default: Any = dataclasses.MISSING, help: str = "", *, cli: bool = True,
            choices: tuple[str, ...] | None = None, default_factory: Any = dataclasses.MISSING,
            metavar: str | None = None) -> Any:
    """A config field with its help text (shown by ``--help``) and whether the CLI exposes it."""
    meta = {"help": help, "cli": cli, "choices": choices, "metavar": metavar}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class FindConfig:
    """How ``find`` turns score maps into instances."""

    threshold: float = setting(0.12, "absolute cosine threshold on GRAFT's scale (scores are typically 0.0-0.2)")
    threshold_mode: Literal["absolute", "relative", "contrast"] = setting(
        "absolute", "absolute: cut at threshold; relative: cut at min + relative_threshold * (max - min) of the map; "
                    "contrast: cut at contrast_threshold on each pixel's probability against a background vocabulary")
    relative_threshold: float = setting(0.5, "in relative mode: the fraction of the map's range to cut at")
    contrast_threshold: float = setting(
        0.5, "in contrast mode: the probability of the query against the background vocabulary to cut at")
    contrast_vocabulary: str | None = setting(
        None, "in contrast mode: a file of background prompts, one per line (default: the packaged "
              "prompts/background.txt)", metavar="PATH")
    contrast_logit_scale: float = setting(CLIP_LOGIT_SCALE, "in contrast mode: the softmax scale (CLIP's)", cli=False)
    thresholds: str | None = setting(
        None, "thresholds.json written by `graft-vqa calibrate`: each concept's calibrated threshold mode, value and "
              "minimum area (the file's global value for other concepts); overrides the threshold settings",
        metavar="PATH")
    min_area_m2: float = setting(0.0, "drop instances smaller than this many m² (needs georeferencing or gsd_m)")
    min_pixels: int = setting(4, "drop instances with fewer pixels (always applies)")
    refine: Literal["sam", "none"] = setting("sam", "refine each instance's mask with SAM, or keep the components")
    sam_box_prompt: bool = setting(False, "also prompt SAM with the component's box")
    merge_iou: float = setting(0.7, "merge refined instances that overlap more than this IoU")

    def __post_init__(self) -> None:
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ConfigError(f"unknown threshold_mode {self.threshold_mode!r}; use one of {', '.join(THRESHOLD_MODES)}")
        if self.refine not in REFINE_MODES:
            raise ConfigError(f"unknown refine {self.refine!r}; use one of {', '.join(REFINE_MODES)}")


@dataclass
class SceneConfig:
    """How rasters above ``EngineConfig.scene_pixels`` are answered: window by window (docs/scenes.md)."""

    scene_window: int = setting(1024, "side of the windows a scene is read and scored in, in pixels")
    scene_overlap: int = setting(64, "overlap of neighbouring windows, in pixels (each keeps only its core)")
    scene_cell: int = setting(16, "pixels per cell of the scene-wide score maps (GRAFT's patch size)")
    scene_max_cells: int = setting(16_000_000, "most cells in a scene-wide map; the cell doubles until it fits")
    sam_window: int = setting(1024, "side of the window SAM refines a scene's instances in")
    feature_cache: bool = setting(True, "keep a scene's features on disk ($GRAFT_VQA_HOME/features) for later questions")
    feature_cache_gb: float = setting(20.0, "largest size of the on-disk feature cache; least recently used scenes go")


@dataclass
class EncoderConfig:
    """The GRAFT architecture, text tower and loading settings that the engine (pixel-level weights) and
    the embedder of search and classification (image-level weights) share; each adds which weights."""

    graft_model: str = setting("graft-vitb16", "GRAFT architecture (graft-tiny for tests)", choices=GRAFT_MODEL_NAMES)
    text_model: str | None = setting(None, "text tower; None: the one that goes with graft_model "
                                           "(clip-vitb16, or clip-tiny for graft-tiny)", cli=False)
    clip_checkpoint: str | None = setting(None, "explicit CLIP ViT-B/16 weights file", metavar="PATH")
    text_template: str = setting("raw", "prompt template for queries and labels: raw (official demo) or ensemble",
                                 choices=("raw", "ensemble"))
    allow_untrained: bool = setting(False, "random weights (seeded) where none are found; answers are marked "
                                           "untrained, and search or classification results mean nothing")
    trust_checkpoint: bool = setting(False, "allow unpickling non-tensor objects in checkpoints you trust")
    device: str = setting("cpu", "torch device for the models")

    def resolved_text_model(self) -> str:
        """The text tower: ``text_model``, else the one that goes with ``graft_model``."""
        if self.text_model:
            return self.text_model
        return "clip-tiny" if self.graft_model == "graft-tiny" else "clip-vitb16"

    def encoder_settings(self) -> dict[str, Any]:
        """The :class:`EncoderConfig` fields of this config, to build another config on the same encoders."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EncoderConfig)}


@dataclass
class EngineConfig(EncoderConfig):
    """Models, weights, sandbox limits and find settings of an :class:`~graft_vqa.engine.Engine`."""

    graft_weights: str = setting(
        "graft-naip-patch", "which GRAFT checkpoint to look for: the NAIP ones for aerial imagery around 1 m, the "
        "Sentinel ones for 10 m satellite tiles (eval picks graft-sentinel-patch for RSVQA-LR)")
    graft_checkpoint: str | None = setting(None, "explicit GRAFT checkpoint file (else found by graft_weights)",
                                           metavar="PATH")
    sam_model: str = setting("vit_b", "SAM size", choices=SAM_MODELS)
    sam_checkpoint: str | None = setting(None, "explicit SAM checkpoint file (else found by sam_model)", metavar="PATH")
    gsd_m: float | None = setting(None, "ground sample distance in metres for images without georeferencing",
                                  metavar="METRES")
    find: FindConfig = setting(help="find settings", default_factory=FindConfig, cli=False)
    scene_pixels: int = setting(64_000_000, "rasters with more pixels than this are answered through a scene plan")
    scene: SceneConfig = setting(help="scene settings", default_factory=SceneConfig, cli=False)
    sandbox_timeout_s: float = setting(30.0, "wall-clock limit per program in seconds, API calls included")
    sandbox_cpu_s: float = setting(3.0, "CPU seconds of the program's own work (runaway loops end here)")
    sandbox_call_budget: int = setting(200, "ImagePatch calls per program")
    sandbox_cost_budget: float = setting(
        20_000_000.0, "cost units of API work per program (pixels scored, instances refined, pairs checked; "
        "about 1 µs of host work each)")
    find_cache_mb: float = setting(16.0, "score maps and found instances a tile keeps between questions, in MB "
                                         "(least recently used first out; more while a question runs)")
    planner_attempts: int = setting(3, "LLM planner: attempts with the error fed back")
    planner_samples: int = setting(1, "LLM planner: programs sampled and run per question; the majority answer "
                                      "wins (self-consistency; 3 helps small local models, 1 for hosted ones)")
    planner_fallback: bool = setting(False, "LLM planner: when every attempt fails and the rule planner "
                                            "understands the question, answer with its program (with a warning)")
    cache_dir: str | None = setting(None, "program cache folder (default $GRAFT_VQA_HOME/programs)", cli=False)

    @classmethod
    def from_options(cls, base: EngineConfig | None = None, **options: Any) -> EngineConfig:
        """A config from ``base`` (default: the defaults) with flat keyword options applied: any
        :class:`EngineConfig`, :class:`FindConfig` or :class:`SceneConfig` field (``threshold=0.1``).

        Raises:
            ConfigError: an unknown option (the message lists the known ones).
        """
        base = base or cls()
        nested = {"find": FindConfig, "scene": SceneConfig}
        engine_fields = {f.name for f in dataclasses.fields(cls)}
        known = {name: {f.name for f in dataclasses.fields(kind)} for name, kind in nested.items()}
        unknown = sorted(set(options) - engine_fields - set().union(*known.values()))
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; use an EngineConfig field "
                              f"({', '.join(sorted(engine_fields))}), a FindConfig field "
                              f"({', '.join(sorted(known['find']))}) or a SceneConfig field "
                              f"({', '.join(sorted(known['scene']))})")
        parts = {}
        for name in nested:
            part = options.get(name, getattr(base, name))
            parts[name] = dataclasses.replace(part, **{k: v for k, v in options.items() if k in known[name]})
        engine = {k: v for k, v in options.items() if k in engine_fields and k not in nested}
        return dataclasses.replace(base, **parts, **engine)

    def settings(self) -> dict[str, Any]:
        """Every setting as a flat ``{name: value}`` (find and scene settings included), e.g. for run metadata."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("find", "scene")}
        flat.update(dataclasses.asdict(self.find))
        flat.update(dataclasses.asdict(self.scene))
        return flat


@dataclass
class EmbedConfig(EncoderConfig):
    """The image-level GRAFT model and text tower behind search and classification (the default embedder)."""

    graft_weights: str = setting(
        "graft-naip", "which image-level GRAFT checkpoint to look for: graft-naip for aerial imagery around 1 m, "
        "graft-sentinel for 10 m satellite tiles")
    graft_checkpoint: str | None = setting(None, "explicit image-level GRAFT checkpoint file (else found by "
                                                 "graft_weights)", metavar="PATH")
    batch_size: int = setting(16, "chips per forward pass of the image model")


@dataclass
class ChipConfig:
    """How rasters are cut into the chips that are embedded (search) or classified."""

    chip: int | None = setting(None, "cut every raster into chips of this many pixels a side; default: rasters up to "
                                     "whole_max pixels a side are one chip, larger ones are cut into 224-pixel chips",
                               metavar="PIXELS")
    chip_overlap: int = setting(0, "pixels shared by neighbouring chips", metavar="PIXELS")
    whole_max: int = setting(512, "without chip: rasters up to this many pixels a side are embedded whole (resized "
                                  "to the model input)", metavar="PIXELS")

    def __post_init__(self) -> None:
        if self.chip is not None and self.chip < 16:
            raise ConfigError(f"chip must be at least 16 pixels (one model patch), got {self.chip}")
        if self.chip_overlap < 0 or self.chip_overlap >= (self.chip or DEFAULT_CHIP):
            raise ConfigError(f"chip_overlap must be between 0 and the chip size minus 1, got {self.chip_overlap}")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass that the command line exposes, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


def apply_options(options: dict[str, Any], *configs: Any) -> tuple[Any, ...]:
    """Each config dataclass in ``configs`` with the flat ``options`` that name its fields applied.

    Raises:
        ConfigError: an option that names no field of any of them (the message lists the known ones).
    """
    names = [{f.name for f in dataclasses.fields(c)} for c in configs]
    unknown = sorted(set(options) - set().union(*names))
    if unknown:
        known = ", ".join(sorted(set().union(*names)))
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {known}")
    return tuple(dataclasses.replace(c, **{k: v for k, v in options.items() if k in n}) for c, n in zip(configs, names))
