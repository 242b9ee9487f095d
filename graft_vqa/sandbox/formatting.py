"""``str.format`` for sandboxed programs: format specs yes, attribute and index access in fields no.

``"{0.__class__}".format(x)`` reads attributes past every guard of the sandbox, so plain
``str.format`` is never handed to a program; ``guards`` hands out :class:`SafeFormatter`'s
``format`` and ``format_map`` instead.

This module imports only the standard library: the zygote loads it.
"""
from __future__ import annotations

import _string
import string
from typing import Any, Callable, Mapping, Sequence


class SafeFormatter(string.Formatter):
    """``str.format`` without attribute or index access inside fields.

    ``"{:.1f} m2".format(x)``, ``"{0}/{1}"``, ``"{name!r:>8}"``, nested specs (``"{:{w}}"``) and
    ``format_map`` work as in Python; ``"{0.attr}"`` and ``"{0[k]}"`` call ``deny`` (the field
    syntax would otherwise read attributes and items past the sandbox's guards).
    """

    def __init__(self, deny: Callable[[str], Any]) -> None:
        self._deny = deny

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        first, rest = _string.formatter_field_name_split(field_name)
        for _ in rest:
            return self._deny(f"attribute and index access inside a format field ({{{field_name}}}) "
                              "is not allowed; compute the value first, then format it, "
                              "e.g. '{:.1f}'.format(patch.area_m2)")
        return self.get_value(first, args, kwargs), first

    def bound(self, text: str, name: str) -> Callable[..., str]:
        """``text.format`` (``name == "format"``) or ``text.format_map`` going through this formatter."""
        if name == "format":
            def format(*args: Any, **kwargs: Any) -> str:
                return self.vformat(text, args, kwargs)
            return format

        def format_map(mapping: Mapping[str, Any]) -> str:
            return self.vformat(text, (), mapping)
        return format_map
