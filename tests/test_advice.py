"""Advice in the interface's words: the library names settings as Python does, the CLI and the app rewrite them."""
from __future__ import annotations

import logging

import pytest

from graft_vqa import weights
from graft_vqa.config import EngineConfig
from graft_vqa.core.errors import AreaUnavailableError, QuestionNotUnderstoodError
from graft_vqa.core.tiles.geo import build_geo, pixel_area_column
from graft_vqa.image_patch import SAM_MISSING
from graft_vqa.interfaces.advice import CliLogFilter, cli_option, for_app, for_cli
from graft_vqa.planner import RulePlanner


def _area_message() -> str:
    with pytest.raises(AreaUnavailableError) as info:
        pixel_area_column(build_geo(None, None, 4, 4, None), 4, 4)
    return str(info.value)


def _rejection() -> str:
    with pytest.raises(QuestionNotUnderstoodError) as info:
        RulePlanner().plan("how many houses r there")
    return str(info.value)


@pytest.mark.parametrize("name, value, flag", [
    ("allow_untrained", "True", "--allow-untrained"), ("gsd_m", "10.0", "--gsd-m 10.0"),
    ("refine", "'none'", "--refine none"), ("graft_checkpoint", "PATH", "--graft-checkpoint PATH"),
])
def test_cli_options_are_the_generated_flags(name, value, flag):
    assert cli_option(name, value) == flag


def test_the_library_speaks_python_and_the_cli_speaks_flags():
    area = _area_message()
    assert "gsd_m=10.0" in area and "load_tile" not in area  # the API's words, no function the CLI lacks
    assert "--gsd-m 10.0" in for_cli(area) and "gsd_m=" not in for_cli(area)
    rejection = _rejection()
    assert "--planner openai" in for_cli(rejection) and "OpenAIPlanner" not in for_cli(rejection)
    missing = weights.missing_message("clip-vitb16")
    cli = for_cli(missing)
    assert "--clip-checkpoint PATH" in cli and "`graft-vqa weights pull clip-vitb16`" in cli
    assert "--allow-untrained" in cli and "explicitly" not in cli and "graft_vqa.weights" not in cli


def test_the_app_points_at_its_settings_or_at_a_restart():
    area = for_app(_area_message())
    assert 'GSD (m/px) 10.0 in Settings' in area and "gsd_m" not in area and "--gsd-m" not in area
    assert 'the "openai" Planner in Settings' in for_app(_rejection())
    graft = for_app(weights.missing_message("graft-naip-patch"))
    assert "restart the app with --graft-checkpoint PATH" in graft
    assert "restart the app with --allow-untrained" in graft and "pass" not in graft.split("To run")[1]
    assert 'untick "Refine instances with SAM" in Settings' in for_app(SAM_MISSING)


def test_no_hint_to_pass_what_was_already_passed():
    untrained = EngineConfig(allow_untrained=True)
    for name in ("graft-naip-patch", "clip-vitb16"):
        message = weights.missing_message(name)
        assert "--allow-untrained" in for_cli(message)
        assert "--allow-untrained" not in for_cli(message, untrained)
        assert "--allow-untrained" not in for_app(message, untrained)
        assert weights.WEIGHTS[name].filename in for_cli(message, untrained)  # the rest of the advice stays
    # a description of the current setting is not a suggestion: it stays
    described = "SAM refinement is off (refine='sam' was asked for); pass refine='none' to skip SAM."
    assert "--refine sam" in for_cli(described, EngineConfig())


def test_sam_advice_never_suggests_random_weights():
    sam = weights.missing_message("sam-vit_b")
    for text in (sam, for_cli(sam), for_app(sam), SAM_MISSING):
        assert "allow" not in text and "untrained" not in text


def test_the_cli_log_filter_rewrites_library_log_lines(caplog):
    logger = logging.getLogger("graft_vqa.test_advice")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(CliLogFilter())
    logger.addHandler(handler)
    try:
        logger.warning("SAM refinement is off: %s", "pass sam_checkpoint=PATH or refine='none'")
    finally:
        logger.removeHandler(handler)
    assert seen == ["SAM refinement is off: pass --sam-checkpoint PATH or --refine none"]
