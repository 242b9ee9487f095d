"""The ImagePatch API as the LLM sees it, generated from the real class (``python -m api_spec.generate``)."""
from __future__ import annotations

from importlib import resources


def api_spec_text() -> str:
    """The committed API spec (Markdown) for planner prompts."""
    return resources.files("api_spec").joinpath("image_patch_api.md").read_text(encoding="utf-8")


__all__ = ["api_spec_text"]
