"""Building registered GRAFT models: the one entry point from a name (and optional checkpoint) to a model.

``model.py`` holds the module and the registry of architectures (``GRAFT_MODELS``); ``checkpoint.py``
reads and writes weights; this module joins them, so neither imports the other's caller.
"""
from __future__ import annotations

from graft_models.checkpoint import load_graft
from graft_models.model import GRAFT_MODELS, GraftModel


def build_graft(name: str = "graft-vitb16", checkpoint: str | None = None, *,
                trust_checkpoint: bool = False) -> GraftModel:
    """Build a registered GRAFT model in eval mode; random weights unless ``checkpoint`` is given.

    With a checkpoint, its architecture must match ``name`` (a :class:`CheckpointError` otherwise).
    """
    if name not in GRAFT_MODELS:
        raise KeyError(f"unknown GRAFT model {name!r}; known: {', '.join(sorted(GRAFT_MODELS))}")
    if checkpoint is not None:
        return load_graft(checkpoint, trust_checkpoint=trust_checkpoint, expect=GRAFT_MODELS[name])
    model = GraftModel(GRAFT_MODELS[name])
    return model.eval()
