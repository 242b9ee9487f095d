"""Perception for ``find``: scorers (text → score maps), components, SAM refinement, geometry.

The names load lazily: the engine imports :mod:`graft_vqa.perception.protocols` on every start, and
that must not pull in torch (a question the rule planner rejects is answered before any model loads).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["GraftScorer", "ImageScorer", "Instance", "Refiner", "SamRefiner", "Scorer", "build_sam", "components",
           "find_instances", "merge_duplicates", "resize_maps"]

_LAZY = {
    "components": "components", "find_instances": "components", "merge_duplicates": "components",
    "Instance": "instances", "ImageScorer": "protocols", "Refiner": "protocols", "Scorer": "protocols",
    "GraftScorer": "scorer", "resize_maps": "scorer", "SamRefiner": "sam", "build_sam": "sam",
}

if TYPE_CHECKING:  # pragma: no cover
    from graft_vqa.perception.components import components, find_instances, merge_duplicates
    from graft_vqa.perception.instances import Instance
    from graft_vqa.perception.protocols import ImageScorer, Refiner, Scorer
    from graft_vqa.perception.sam import SamRefiner, build_sam
    from graft_vqa.perception.scorer import GraftScorer, resize_maps


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
