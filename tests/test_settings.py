"""One source for each setting: the config dataclasses give every interface its names and defaults."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import graft_vqa
from graft_vqa import Engine, EngineConfig, FindConfig
from graft_vqa.core.errors import ConfigError
from graft_vqa.core.tiles import load_tile
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.interfaces.app.session import UISettings
from graft_vqa.interfaces.evaluation.run import build_parser as eval_parser
from graft_vqa.interfaces.evaluation.run import system_meta
from graft_vqa.interfaces.options import engine_config
from graft_vqa.interfaces.cli import build_parser

from .synthetic import RectScorer

BLOBS = {"building": [(10, 20, 10, 20)]}


class Ramp:
    """Scores rise from 0 (left) to 1 (right), so relative and absolute cuts differ."""

    def score_maps(self, tile, queries):
        ramp = np.linspace(0.0, 1.0, tile.width, dtype=np.float32)
        return np.broadcast_to(ramp, (len(queries), tile.height, tile.width)).copy()


def _root(config: FindConfig) -> ImagePatch:
    tile = load_tile(np.full((64, 64, 3), 90, np.uint8))
    return ImagePatch(tile, context=PatchContext(tile=tile, scorer=Ramp(), config=config))


def test_verify_property_honours_relative_mode():
    # the left half's mean score is about 0.25: above an absolute 0.12, below a relative cut at 0.5
    absolute = _root(FindConfig(threshold=0.12, refine="none")).crop(0, 0, 32, 64)
    relative = _root(FindConfig(threshold=0.12, threshold_mode="relative", relative_threshold=0.5,
                                refine="none")).crop(0, 0, 32, 64)
    assert absolute.verify_property("roof", "red") is True
    assert relative.verify_property("roof", "red") is False
    right = _root(FindConfig(threshold_mode="relative", relative_threshold=0.5, refine="none")).crop(32, 0, 64, 64)
    assert right.verify_property("roof", "red") is True


def test_ask_accepts_find_settings_as_keywords():
    image = np.full((64, 64, 3), 90, np.uint8)
    found = graft_vqa.ask(image, "How many buildings are there?", scorer=RectScorer(BLOBS), refine="none")
    assert found.answer == "1"
    too_high = graft_vqa.ask(image, "How many buildings are there?", scorer=RectScorer(BLOBS), refine="none",
                             threshold=0.9)  # RectScorer scores 0.5 inside its rectangles
    assert too_high.answer == "0"


def test_unknown_options_and_misplaced_configs_say_how_to_pass_them():
    image = np.full((64, 64, 3), 90, np.uint8)
    with pytest.raises(ConfigError, match="threshhold.*FindConfig field"):
        graft_vqa.ask(image, "Is there a road?", threshhold=0.1)
    with pytest.raises(ConfigError, match=r"pass it by name, Engine\(config=EngineConfig"):
        Engine(EngineConfig())
    engine = Engine(allow_untrained=True, threshold=0.07, config=EngineConfig(gsd_m=2.0))
    assert engine.config.allow_untrained and engine.config.find.threshold == 0.07 and engine.config.gsd_m == 2.0


def test_interfaces_take_their_defaults_from_the_config():
    assert UISettings().threshold == FindConfig().threshold and UISettings().refine == FindConfig().refine
    args = build_parser().parse_args(["ask", "t.tif", "q"])
    assert engine_config(args).find == FindConfig() and engine_config(args).sam_model == EngineConfig().sam_model
    help_text = build_parser()._subparsers._group_actions[0].choices["ask"].format_help()
    assert f"(default: {FindConfig.threshold})" in help_text


def test_sam_has_one_name_everywhere():
    args = build_parser().parse_args(["ask", "t.tif", "q", "--sam-model", "vit_l", "--refine", "none"])
    config = engine_config(args)
    assert (config.sam_model, config.find.refine) == ("vit_l", "none")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "t.tif", "q", "--sam", "vit_l"])
    eval_args = eval_parser().parse_args(["--out", "o", "--refine", "none", "--sam-model", "vit_h"])
    eval_args.graft_weights = "graft-sentinel-patch"  # chosen per benchmark when the run starts
    meta = system_meta(eval_args)
    assert meta["refine"] == "none" and meta["sam_model"] == "vit_h" and "sam" not in meta
    assert {f.name for f in dataclasses.fields(UISettings)} >= {"refine", "threshold"}
    json.dumps(meta)  # the run metadata is plain JSON

