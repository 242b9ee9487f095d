"""The :class:`Program` a planner hands to the sandbox, the :class:`Planner` protocol, question normalisation."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

_SPACES = re.compile(r"\s+")


@dataclass
class Program:
    """A generated program and where it came from."""

    source: str  # Python source defining ``execute_command(image_patch)``
    planner: str  # id of the planner that wrote it ("rules", "openai:<model>")
    question: str  # the question as the user asked it
    meta: dict[str, Any] = field(default_factory=dict)  # planner details (attempts, repairs, cache hit, ...)


@runtime_checkable
class Planner(Protocol):
    """What the engine and :func:`~graft_vqa.planner.plan_with_feedback` need from a planner."""

    planner_id: str  # id in cache keys and Program.planner ("rules", "openai:<model>")
    prompt_version: str  # changes whenever what the planner is shown changes (cache key)
    deterministic: bool  # True: asking again gives the same program, so feedback is pointless

    def plan(self, question: str, feedback: str | None = None) -> Program: ...


def normalise_question(question: str) -> str:
    """Return the cache form of a question: lower case, single spaces, no trailing punctuation."""
    text = _SPACES.sub(" ", question.strip().lower())
    return text.rstrip(" ?.!").strip()
