"""GRAFT models: satellite encoders aligned with CLIP, checkpoint import/export, text encoder, zero-shot tools."""
from graft_models.checkpoint import export_official, load_graft, save_graft
from graft_models.factory import build_graft
from graft_models.model import GRAFT_MODELS, GraftConfig, GraftModel
from graft_models.text import TextEncoder, build_text_encoder

__all__ = [
    "GRAFT_MODELS",
    "GraftConfig",
    "GraftModel",
    "TextEncoder",
    "build_graft",
    "build_text_encoder",
    "export_official",
    "load_graft",
    "save_graft",
]
