"""The ImagePatch API as the LLM sees it, generated from the real class (``python -m api_spec.generate``)."""
from __future__ import annotations



def api_spec_text() -> str:
    """The committed API spec (Markdown) for planner prompts (read by :func:`prompts.api_spec_text`)."""
    from prompts import api_spec_text as read_spec

    return read_spec()


__all__ = ["api_spec_text"]
