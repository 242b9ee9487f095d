"""Marking the methods and properties of ``ImagePatch`` that generated programs may use.

The single source of truth for the API the LLM sees (``api_spec/``) and for what the sandbox
lets a program call: only members marked with :func:`api` are reachable from a program.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

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
