"""Marking the methods and properties of ``ImagePatch`` that generated programs may use.

The single source of truth for the API the LLM sees (``api_spec/``) and for what the sandbox
lets a program call: only members marked with :func:`api` are reachable from a program. API
implementations charge their work with :func:`charge`; the sandbox host meters each program.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_API_FLAG = "__graft_api__"


def api(func: F) -> F:
    """Mark a method (put it under ``@property`` for properties) as part of the program API."""
    setattr(func, _API_FLAG, True)
    return func


def api_members(cls: type) -> dict[str, Any]:
    """Return ``{name: member}`` for every API-marked method or property of ``cls``, in source order."""
    return dict(_api_members(cls))


@functools.lru_cache(maxsize=None)
def _api_members(cls: type) -> tuple[tuple[str, Any], ...]:
    # Base classes first; within a class, vars() keeps definition (source) order.
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            target = member.fget if isinstance(member, property) else member
            if getattr(target, _API_FLAG, False):
                members[name] = member
    return tuple(members.items())


# --- cost accounting -------------------------------------------------------------------------------
COST_UNIT = "about one microsecond of host CPU on the development machine"
"""What one unit of API cost stands for (a fixed scale, so budgets do not depend on machine load)."""


class CostExceeded(Exception):
    """An API call would exceed its program's cost budget or wall-clock deadline.

    ``status`` is ``"error"`` for the cost budget and ``"timeout"`` for the deadline; the sandbox
    ends the program with it (a program cannot catch it).
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class CostMeter:
    """Charges API work to one program: a budget in cost units and a wall-clock deadline."""

    def __init__(self, budget: float, deadline: float | None = None, timeout_s: float | None = None) -> None:
        self.budget = float(budget)  # units the program may spend in API calls
        self.deadline = deadline  # time.monotonic() by which the whole program must end (None: none)
        self.timeout_s = timeout_s  # the limit behind ``deadline``, for messages
        self.spent = 0.0  # units charged so far
        self.by_kind: dict[str, float] = {}  # units charged per kind of work
        self.exceeded: CostExceeded | None = None  # set when a charge went over (even if swallowed)

    def charge(self, units: float, what: str) -> None:
        """Add ``units`` of ``what`` work; raise :class:`CostExceeded` past the budget or deadline."""
        self.spent += units
        self.by_kind[what] = self.by_kind.get(what, 0.0) + units
        if self.spent > self.budget:
            top = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.by_kind.items(), key=lambda kv: -kv[1]))
            self.exceeded = CostExceeded(
                "error", f"the program's API calls cost more than its budget ({self.spent:,.0f} of "
                         f"{self.budget:,.0f} units (cost_budget); {top}); find each name once, reuse the "
                         "lists, and relate lists with one filter_related call")
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.exceeded = CostExceeded(
                "timeout", f"the program ran longer than {self.timeout_s:g} s (timeout_s, API calls "
                           "included) and was stopped")
        if self.exceeded is not None:
            raise self.exceeded


_METER: contextvars.ContextVar[CostMeter | None] = contextvars.ContextVar("graft_api_meter", default=None)


def charge(units: float, what: str) -> None:
    """Charge ``units`` of API work of kind ``what`` (``"pairs"``, ``"pixels scored"``,
    ``"instances refined"`` ...) to the program being served, if any; outside the sandbox a no-op.

    API implementations call it *before* the work where the cost is known up front, so a call
    that would blow the budget does no work at all."""
    meter = _METER.get()
    if meter is not None:
        meter.charge(units, what)


@contextlib.contextmanager
def metered(meter: CostMeter) -> Iterator[CostMeter]:
    """Charge the API calls made inside the ``with`` block to ``meter``."""
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)
