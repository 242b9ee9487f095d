"""The :class:`Program` a planner hands to the sandbox, and question normalisation."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_SPACES = re.compile(r"\s+")


@dataclass
class Program:
    """A generated program and where it came from."""

    source: str  # Python source defining ``execute_command(image_patch)``
    planner: str  # id of the planner that wrote it ("rules", "openai:<model>")
    question: str  # the question as the user asked it
    meta: dict[str, Any] = field(default_factory=dict)  # planner details (attempts, repairs, cache hit, ...)


def normalise_question(question: str) -> str:
    """Return the cache form of a question: lower case, single spaces, no trailing punctuation."""
    text = _SPACES.sub(" ", question.strip().lower())
    return text.rstrip(" ?.!").strip()
