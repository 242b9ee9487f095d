"""Plan, validate, optionally run; on failure re-ask the planner with the error (bounded)."""
from __future__ import annotations

import logging
from typing import Callable

from graft_vqa.planner import prompts
from graft_vqa.core.errors import PlannerError, ProgramError
from graft_vqa.planner.cache import ProgramCache
from graft_vqa.planner.extract import UnusableReplyError, validate_program
from graft_vqa.planner.program import Planner, Program

log = logging.getLogger(__name__)

RunCheck = Callable[[str], "tuple[bool, str | None]"]
"""Runs a program source; returns (ok, error message quoting the failing line)."""

_MAX_FED_BACK = 4000  # characters of a previous reply quoted back to the model


def plan_with_feedback(planner: Planner, question: str, run: RunCheck | None = None,
                       max_attempts: int = 3) -> Program:
    """Return a program that validates (and, when ``run`` is given, runs without error).

    Each failure (no usable code, invalid program, runtime error reported by ``run``) is fed
    back to the planner on the next attempt, at most ``max_attempts`` attempts in all. A
    deterministic planner (``planner.deterministic``) is asked once. Raises
    :class:`PlannerError` (or its subclass ``QuestionNotUnderstoodError``) when no attempt
    works; the message holds the last error, ``.program`` the last attempt's program (None when
    that attempt's reply held no usable code), ``.errors`` every error and ``.attempts`` the
    ``(program or None, error)`` pair of every attempt, in order.
    """
    attempts = 1 if getattr(planner, "deterministic", False) else max(1, max_attempts)
    feedback: str | None = None
    failed: list[tuple[Program | None, str]] = []  # (program, error) of each failed attempt
    for attempt in range(1, attempts + 1):
        program: Program | None = None
        try:
            program = planner.plan(question, feedback=feedback)
            shown, error = program.source, _check(program.source, run)
        except UnusableReplyError as exc:
            shown, error = exc.reply[:_MAX_FED_BACK] or "(empty reply)", str(exc)
        if error is None and program is not None:
            program.meta.update(attempts=attempt, errors=[e for _, e in failed])
            return program
        log.info("Attempt %d/%d for %r failed: %s", attempt, attempts, question, error)
        failed.append((program, error))
        feedback = prompts.render("feedback", program=shown.strip(), error=error)
    last_program, last_error = failed[-1]
    failure = PlannerError(f"No working program for {question!r} after {attempts} attempt(s); "
                           f"last error: {last_error}. Rephrase the question or try another planner.")
    failure.program = last_program  # type: ignore[attr-defined]
    failure.errors = [e for _, e in failed]  # type: ignore[attr-defined]
    failure.attempts = failed  # type: ignore[attr-defined]
    raise failure


def _check(source: str, run: RunCheck | None) -> str | None:
    """Validate, then run; return the error message or None when the program is fine."""
    try:
        validate_program(source)
    except ProgramError as exc:
        return str(exc)
    if run is None:
        return None
    ok, error = run(source)
    return None if ok else (error or "the program failed without a message")


def plan_cached(planner: Planner, question: str, cache: ProgramCache | None, run: RunCheck | None = None,
                max_attempts: int = 3) -> Program:
    """:func:`plan_with_feedback` behind a :class:`ProgramCache` (a hit is returned unrun)."""
    if cache is not None:
        hit = cache.get(question, planner.planner_id, planner.prompt_version)
        if hit is not None:
            return hit
    program = plan_with_feedback(planner, question, run=run, max_attempts=max_attempts)
    if cache is not None:
        cache.put(program, planner.planner_id, planner.prompt_version)
    return program
