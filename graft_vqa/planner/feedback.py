"""Plan, check, run; on failure re-ask the planner with the error (bounded); vote over samples; fall back.

- :func:`plan_with_feedback`: one program that validates, searches for the question's nouns, runs and
  returns the kind of answer the question asks for; each failure is fed back to the planner.
- :func:`plan_voted`: self-consistency: ``samples`` programs (each with its own feedback loop), run,
  the majority answer wins; failed programs do not vote.
- :func:`plan_cached`: the above behind a :class:`ProgramCache`, with an optional fallback planner
  (the rule planner) when every attempt fails; the fallback says so in ``Program.meta["warnings"]``.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from graft_vqa.core.errors import PlannerError, ProgramError, QuestionNotUnderstoodError
from graft_vqa.planner import prompts
from graft_vqa.planner.cache import ProgramCache
from graft_vqa.planner.checks import form_problem, kind_problem, noun_problem
from graft_vqa.planner.extract import UnusableReplyError, validate_program
from graft_vqa.planner.program import Planner, Program

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What running a candidate program gave."""

    ok: bool  # ran and returned a usable answer
    error: str | None = None  # why not, quoting the failing line
    kind: str | None = None  # the answer's kind when ok ("bool", "count", "area_m2", "text")
    answer: str | None = None  # the short normalised answer when ok (what self-consistency votes on)


RunCheck = Callable[[str], "RunResult | tuple[bool, str | None]"]
"""Runs a program source; returns a :class:`RunResult` (or the older ``(ok, error)`` pair)."""

_MAX_FED_BACK = 4000  # characters of a previous reply quoted back to the model


def _as_result(result: RunResult | tuple[bool, str | None]) -> RunResult:
    if isinstance(result, RunResult):
        return result
    ok, error = result
    return RunResult(bool(ok), error)


@dataclass
class _Verdict:
    error: str | None = None  # None: accepted
    soft: bool = False  # only a soft problem (suspect nouns): acceptable as a last resort
    answer: str | None = None  # the run's answer, when it ran


def _judge(question: str, source: str, run: RunCheck | None, check_question: bool) -> _Verdict:
    """Validate, check the nouns, run, check the answer's kind."""
    try:
        validate_program(source)
    except ProgramError as exc:
        return _Verdict(str(exc))
    nouns = noun_problem(question, source) if check_question else None
    if nouns is not None and nouns.hard:
        return _Verdict(f"wrong object names: {nouns.message}")
    form = form_problem(question, source) if check_question else None
    if form is not None:
        return _Verdict(f"the program does not ask what the question asks: {form.message}")
    if run is None:
        return _Verdict(nouns.message, soft=True) if nouns is not None else _Verdict()
    result = _as_result(run(source))
    if not result.ok:
        return _Verdict(result.error or "the program failed without a message")
    if check_question and result.kind is not None:
        kind = kind_problem(question, result.kind, result.answer or "")
        if kind is not None:
            return _Verdict(f"wrong kind of answer: {kind.message}")
    if nouns is not None:
        return _Verdict(f"suspect object names: {nouns.message}", soft=True, answer=result.answer)
    return _Verdict(answer=result.answer)


def plan_with_feedback(planner: Planner, question: str, run: RunCheck | None = None, max_attempts: int = 3, *,
                       sample: int = 0, check_question: bool = True) -> Program:
    """Return a program that validates, names the question's nouns, and (when ``run`` is given) runs
    and returns the kind of answer the question asks for.

    Each failure (no usable code, invalid program, wrong nouns, runtime error, wrong answer kind) is
    fed back to the planner on the next attempt, at most ``max_attempts`` attempts in all. A
    deterministic planner (``planner.deterministic``) is asked once. ``sample`` > 0 asks the planner
    for another sample (``planner.plan(..., sample=n)``: sampled, not greedy). A program whose only
    problem is a suspect noun (one the question does not contain, when the rule grammar cannot parse
    the question) is returned as a last resort with a warning in ``meta["warnings"]``. Raises
    :class:`PlannerError` when no attempt works; the message holds the last error, ``.program`` the
    last attempt's program (None when that attempt's reply held no usable code), ``.errors`` every
    error and ``.attempts`` the ``(program or None, error)`` pair of every attempt, in order.
    """
    attempts = 1 if getattr(planner, "deterministic", False) else max(1, max_attempts)
    feedback: str | None = None
    failed: list[tuple[Program | None, str]] = []  # (program, error) of each failed attempt
    suspect: tuple[Program, _Verdict] | None = None  # the last program with only a soft problem
    extra = {"sample": sample} if sample else {}
    for attempt in range(1, attempts + 1):
        program: Program | None = None
        try:
            program = planner.plan(question, feedback=feedback, **extra)
            shown, verdict = program.source, _judge(question, program.source, run, check_question)
        except UnusableReplyError as exc:
            shown, verdict = exc.reply[:_MAX_FED_BACK] or "(empty reply)", _Verdict(str(exc))
        if verdict.error is None and program is not None:
            program.meta.update(attempts=attempt, errors=[e for _, e in failed], answer=verdict.answer)
            return program
        log.info("Attempt %d/%d for %r failed: %s", attempt, attempts, question, verdict.error)
        if verdict.soft and program is not None:
            suspect = (program, verdict)
        failed.append((program, verdict.error or ""))
        feedback = prompts.render("feedback", program=shown.strip(), error=verdict.error or "")
    if suspect is not None:
        program, verdict = suspect
        program.meta.update(attempts=attempts, errors=[e for _, e in failed], answer=verdict.answer,
                            warnings=[f"The planner's program may not answer the question: {verdict.error}."])
        return program
    last_program, last_error = failed[-1]
    failure = PlannerError(f"No working program for {question!r} after {attempts} attempt(s); "
                           f"last error: {last_error}. Rephrase the question or try another planner.")
    failure.program = last_program  # type: ignore[attr-defined]
    failure.errors = [e for _, e in failed]  # type: ignore[attr-defined]
    failure.attempts = failed  # type: ignore[attr-defined]
    raise failure


def plan_voted(planner: Planner, question: str, run: RunCheck | None, samples: int = 1, max_attempts: int = 3,
               *, check_question: bool = True) -> Program:
    """Self-consistency: up to ``samples`` programs, each run; the answer most of them give wins.

    Sample 0 is the planner's greedy program, the others are sampled. Programs that fail (after their
    own feedback attempts) do not vote. Sampling stops early once no remaining sample could change
    the winner. Ties go to the earliest answer (so to the greedy program when it is in the tie). With
    one sample, no ``run`` or a deterministic planner this is :func:`plan_with_feedback`. The winner's
    ``meta["votes"]`` maps each answer to its number of programs.
    """
    if samples <= 1 or run is None or getattr(planner, "deterministic", False):
        return plan_with_feedback(planner, question, run, max_attempts, check_question=check_question)
    ballots: dict[str | None, list[Program]] = {}
    failure: PlannerError | None = None
    asked = 0
    for sample in range(samples):
        asked += 1
        try:
            program = plan_with_feedback(planner, question, run, max_attempts, sample=sample,
                                         check_question=check_question)
        except PlannerError as exc:
            failure = failure or exc
            continue
        ballots.setdefault(program.meta.get("answer"), []).append(program)
        counts = sorted((len(v) for v in ballots.values()), reverse=True)
        if counts[0] - (counts[1] if len(counts) > 1 else 0) > samples - asked:
            break  # the leader cannot be caught
    if not ballots:
        assert failure is not None
        raise failure
    tally = Counter({answer: len(programs) for answer, programs in ballots.items()})
    winner = max(ballots, key=lambda answer: tally[answer])  # first inserted wins ties
    program = ballots[winner][0]
    program.meta.update(votes={str(k): v for k, v in tally.items()}, samples=asked,
                        attempts=sum(p.meta.get("attempts", 1) for v in ballots.values() for p in v))
    return program


def fallback_program(fallback: Planner, question: str, failure: PlannerError, planner_id: str) -> Program:
    """The fallback planner's program for ``question``, with a warning that says why; re-raises
    ``failure`` when the fallback does not understand the question either."""
    try:
        program = fallback.plan(question)
        validate_program(program.source)
    except (QuestionNotUnderstoodError, ProgramError):
        raise failure from None
    errors = getattr(failure, "errors", None) or [str(failure)]
    program.meta["warnings"] = [f"The {planner_id} planner found no working program (last error: {errors[-1]}); this answer "
                                f"comes from the {fallback.planner_id} planner's program instead."]
    program.meta["fallback_from"] = planner_id
    return program


def plan_cached(planner: Planner, question: str, cache: ProgramCache | None, run: RunCheck | None = None,
                max_attempts: int = 3, *, samples: int = 1, fallback: Planner | None = None) -> Program:
    """:func:`plan_voted` behind a :class:`ProgramCache` (a hit is returned unrun); when planning fails
    and ``fallback`` understands the question, its program (with a warning) is used and cached."""
    if cache is not None:
        hit = cache.get(question, planner.planner_id, planner.prompt_version)
        if hit is not None:
            return hit
    try:
        program = plan_voted(planner, question, run, samples, max_attempts)
    except PlannerError as failure:
        if fallback is None or isinstance(failure, QuestionNotUnderstoodError) or fallback is planner:
            raise
        program = fallback_program(fallback, question, failure, planner.planner_id)
        log.warning("%s", program.meta["warnings"][0])
    if cache is not None:
        cache.put(program, planner.planner_id, planner.prompt_version)
    return program
