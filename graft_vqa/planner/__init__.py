"""Planners: turn a question into a program against the ``ImagePatch`` API.

- :class:`RulePlanner`: offline, deterministic, RSVQA question families.
- :class:`OpenAIPlanner`: any OpenAI-compatible endpoint through the ``openai`` client.
- :func:`plan_with_feedback`: validate (and optionally run) a program, re-asking with the error.
- :class:`ProgramCache`: programs on disk by (normalised question, planner id, prompt version).
"""
from __future__ import annotations

from graft_vqa.planner.cache import ProgramCache
from graft_vqa.planner.extract import UnusableReplyError, extract_program, validate_program
from graft_vqa.planner.feedback import plan_cached, plan_with_feedback
from graft_vqa.planner.program import Planner, Program, normalise_question
from graft_vqa.planner.rules import RulePlanner

__all__ = [
    "OpenAIPlanner", "Planner", "Program", "ProgramCache", "RulePlanner", "UnusableReplyError",
    "extract_program", "normalise_question", "plan_cached", "plan_with_feedback", "validate_program",
]


def __getattr__(name: str) -> object:
    """Import :class:`OpenAIPlanner` (and the slow ``openai`` package) only when it is used."""
    if name == "OpenAIPlanner":
        from graft_vqa.planner.openai_planner import OpenAIPlanner

        return OpenAIPlanner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
