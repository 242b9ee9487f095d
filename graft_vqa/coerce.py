"""Turning a program's raw return value into a typed, normalised answer.

A program returns plain data. Booleans become ``"yes"``/``"no"``, integers counts, floats areas in m²
when the program measured area, and strings stay text (``"yes"``/``"no"``, digit strings, ``"12 m2"``
and shares of the image such as ``"37.5%"`` are recognised). Anything else is a failure, reported as such, never as ``"no"``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from graft_vqa.answer import AnswerKind
from graft_vqa.core.errors import ProgramError

_AREA_CALLS = re.compile(r"\b(area_m2|coverage_m2)\b")
_YES = {"yes", "true", "y"}
_NO = {"no", "false", "n"}


@dataclass(frozen=True)
class Coerced:
    answer: str  # the short normalised string
    value: bool | int | float | str  # the typed value
    kind: AnswerKind


def format_area(m2: float) -> str:
    """``1520.4`` → ``"1520 m2"`` (whole square metres, as RSVQA-HR writes areas)."""
    return f"{round(m2)} m2"


def coerce(value: Any, *, program: str = "") -> Coerced:
    """Normalise ``value``; ``program`` (its source) tells areas from other numbers.

    Raises :class:`ProgramError` for values that are no answer (None, lists, NaN, negative counts).
    """
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        return Coerced("yes" if value else "no", value, "bool")
    if isinstance(value, int):
        if value < 0:
            raise ProgramError(f"the program returned a negative count ({value})")
        return Coerced(str(value), value, "count")
    if isinstance(value, float):
        return _coerce_float(value, program)
    if isinstance(value, str):
        return _coerce_str(value)
    if value is None:
        raise ProgramError("the program returned nothing (None); it must return a bool, a number or a string")
    raise ProgramError(f"the program returned a {type(value).__name__}; "
                       "it must return a bool, a count, an area or a short string")


def _coerce_float(value: float, program: str) -> Coerced:
    if not math.isfinite(value):
        raise ProgramError(f"the program returned {value}, which is not a finite number")
    if _AREA_CALLS.search(program):
        if value < 0:
            raise ProgramError(f"the program returned a negative area ({value})")
        return Coerced(format_area(value), float(value), "area_m2")
    if value.is_integer() and value >= 0:
        return Coerced(str(int(value)), int(value), "count")
    return Coerced(f"{value:.4g}", value, "text")


def _coerce_str(value: str) -> Coerced:
    text = value.strip().lower().rstrip(".")
    if text in _YES:
        return Coerced("yes", True, "bool")
    if text in _NO:
        return Coerced("no", False, "bool")
    if text.isascii() and text.isdigit():  # "²".isdigit() is True too, but int("²") fails
        return Coerced(str(int(text)), int(text), "count")
    percent = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if percent:
        return Coerced(f"{float(percent.group(1)):g}%", float(percent.group(1)), "percent")
    area = re.fullmatch(r"(\d+(?:\.\d+)?)\s*m(?:2|²)", text)
    if area:
        return Coerced(format_area(float(area.group(1))), float(area.group(1)), "area_m2")
    return Coerced(text, text, "text")
