"""graft-vqa: ask satellite and aerial tiles questions and get answers you can audit.

    import graft_vqa
    answer = graft_vqa.ask("tile.tif", "How many buildings are there?")
    print(answer.answer, answer.program)

GRAFT's other jobs: ``build_index``/``search`` (text search over tile collections), ``classify``
(zero-shot labels per tile or chip) and ``segment`` (a text-prompted mask, GeoTIFF and vectors).

Heavy parts (torch, models) load lazily: importing the package is cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Answer", "ChipConfig", "CollectionAnswer", "Detection", "EmbedConfig", "Engine", "EngineConfig",
           "FindConfig", "ask", "ask_many", "build_index", "classify", "evaluate_miou", "load_tile", "search",
           "segment", "__version__"]

_LAZY = {
    "Answer": "graft_vqa.answer", "Detection": "graft_vqa.answer", "Engine": "graft_vqa.engine",
    "ask": "graft_vqa.engine", "ask_many": "graft_vqa.collection", "CollectionAnswer": "graft_vqa.collection",
    "EngineConfig": "graft_vqa.config", "FindConfig": "graft_vqa.config",
    "segment": "graft_vqa.segmentation", "evaluate_miou": "graft_vqa.segmentation", "load_tile": "graft_vqa.core.tiles", "ImagePatch": "graft_vqa.image_patch",
    "build_index": "graft_vqa.retrieval", "search": "graft_vqa.retrieval", "classify": "graft_vqa.classification",
    "EmbedConfig": "graft_vqa.config", "ChipConfig": "graft_vqa.config",
}

if TYPE_CHECKING:  # pragma: no cover
    from graft_vqa.answer import Answer, Detection
    from graft_vqa.classification import classify
    from graft_vqa.collection import CollectionAnswer, ask_many
    from graft_vqa.config import ChipConfig, EmbedConfig, EngineConfig, FindConfig
    from graft_vqa.engine import Engine, ask
    from graft_vqa.retrieval import build_index, search
    from graft_vqa.segmentation import segment


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'graft_vqa' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
