"""Layer 1 of the sandbox, run time: default-deny, type-aware guards for compiled programs.

``build_globals`` gives a program (compiled by ``policy.compile_program``) the globals it runs
under. Attribute reads are allowed only from an explicit allow-list per exact type, from the
ImagePatch proxy's API list, from the ``math`` names, and from the members a program's own classes
define (decided on the class that ``getattr`` would really read the member from, in MRO order).
Program classes may subclass only ``object``, other program classes and the exceptions they can
name: subclasses of ``str``, ``dict``, ``list`` and the like are refused when the class is built,
so no built-in method hides behind a program class. Anything else calls ``deny``, which in the
sandbox child ends the program at once with status ``refused`` (so ``try/except`` cannot swallow
it). ``str.format`` and ``format_map`` on a string go through ``SafeFormatter``: format specs,
conversions and positional or named fields work, attribute and index access inside a field
(``"{0.x}"``, ``"{0[1]}"``) is refused.

This module imports only the standard library and RestrictedPython: the zygote loads it.
"""
from __future__ import annotations

import builtins
import math
import operator
import sys
import types
from typing import Any, Callable

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from .formatting import SafeFormatter
from .policy import ALLOWED_IMPORTS, PROGRAM_FILENAME

RANGE_CAP = 10_000_000
"""Largest ``range`` a program may build."""

_STR_ATTRS = frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "join",
    "startswith", "endswith", "replace", "find", "rfind", "index", "rindex", "count", "title",
    "capitalize", "casefold", "swapcase", "isdigit", "isalpha", "isalnum", "isspace", "islower",
    "isupper", "isnumeric", "isdecimal", "zfill", "center", "ljust", "rjust", "partition",
    "rpartition", "removeprefix", "removesuffix",
})
_NUMBER_ATTRS = frozenset({"real", "imag", "conjugate", "numerator", "denominator", "bit_length",
                           "is_integer", "as_integer_ratio"})
_SET_ATTRS = frozenset({
    "add", "discard", "remove", "pop", "clear", "copy", "union", "intersection", "difference",
    "symmetric_difference", "issubset", "issuperset", "isdisjoint", "update",
    "intersection_update", "difference_update", "symmetric_difference_update",
})
SAFE_ATTRS: dict[type, frozenset[str]] = {
    str: _STR_ATTRS,
    list: frozenset({"append", "extend", "pop", "index", "count", "sort", "reverse", "insert",
                     "remove", "copy", "clear"}),
    dict: frozenset({"keys", "values", "items", "get", "copy", "update", "setdefault", "pop",
                     "popitem", "clear"}),
    set: _SET_ATTRS,
    frozenset: frozenset({"copy", "union", "intersection", "difference", "symmetric_difference",
                          "issubset", "issuperset", "isdisjoint"}),
    tuple: frozenset({"count", "index"}),
    int: _NUMBER_ATTRS, bool: _NUMBER_ATTRS, float: _NUMBER_ATTRS,
    complex: frozenset({"real", "imag", "conjugate"}),
}
"""Attributes a program may read, per exact built-in type; every other type is denied."""

SAFE_BUILTINS = (
    "len", "min", "max", "sum", "abs", "round", "sorted", "enumerate", "zip", "any", "all", "int",
    "float", "str", "bool", "list", "dict", "set", "frozenset", "tuple", "isinstance", "reversed",
    "map", "filter", "divmod", "pow", "chr", "ord", "repr", "object", "format",
)
"""Builtins a program may use (plus ``range``, capped, the exceptions below and ``math``)."""

_SUBSCRIPTABLE = (list, tuple, str, dict, range, bytes)
_WRITABLE = (list, dict)
_EXCEPTIONS = (
    "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "ZeroDivisionError",
    "ArithmeticError", "LookupError", "RuntimeError", "NotImplementedError", "AssertionError",
    "StopIteration", "AttributeError", "OverflowError",
)
_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior,
    "^=": operator.ixor, "@=": operator.imatmul,
}



def program_line() -> int | None:
    """The line of the program being executed, found by walking the current stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == PROGRAM_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


class SandboxClass(type):
    """Metaclass of every class a program defines (RestrictedPython's ``__metaclass__``)."""


def _defining_class(klasses: tuple[type, ...], name: str) -> type | None:
    """The first class of an MRO whose own namespace holds ``name`` (what ``getattr`` finds)."""
    for klass in klasses:
        if name in vars(klass):
            return klass
    return None


def _user_defines(obj: Any, name: str) -> bool:
    """True when reading ``name`` on ``obj`` reaches a member the program itself defined.

    Decided the way ``getattr`` resolves: the *first* class in the MRO that holds ``name`` must
    be a program class (a built-in base earlier in the MRO, such as ``str`` with its
    ``format``, wins over a program class later on and is refused). An instance-dict
    attribute counts only on an instance of a program class, and only when no class in its
    MRO holds the name (a class attribute may be a data descriptor that wins over the dict).
    """
    if type(obj) is SandboxClass:
        owner = _defining_class(obj.__mro__, name)
        return owner is not None and type(owner) is SandboxClass
    if type(type(obj)) is not SandboxClass:
        return False
    owner = _defining_class(type(obj).__mro__, name)
    if owner is not None:
        return type(owner) is SandboxClass
    instance_dict = getattr(obj, "__dict__", None)
    return type(instance_dict) is dict and name in instance_dict


_BASE_EXCEPTIONS = tuple(getattr(builtins, name) for name in _EXCEPTIONS)


def _allowed_base(base: Any) -> bool:
    """True for the bases a program class may have: object, program classes, the exceptions."""
    return (base is object or type(base) is SandboxClass
            or any(base is exc for exc in _BASE_EXCEPTIONS))


_MATH_NAMES = {k: v for k, v in vars(math).items() if not k.startswith("_")}
_SAFE_BUILTINS = {name: getattr(builtins, name) for name in SAFE_BUILTINS + _EXCEPTIONS}


def _restricted_math() -> types.SimpleNamespace:
    return types.SimpleNamespace(**_MATH_NAMES)


class _Printer:
    """What RestrictedPython's ``_print_`` builds: ``print`` writes to a capped sink."""

    def __init__(self, sink: "PrintSink") -> None:
        self._sink = sink
        self._parts: list[str] = []

    def __call__(self) -> str:  # the program's ``printed``
        return "".join(self._parts)

    def _call_print(self, *objects: Any, sep: str = " ", end: str = "\n") -> None:
        text = str(sep).join(str(o) for o in objects) + str(end)
        if len(self._parts) < 1000:
            self._parts.append(text[:1000])
        self._sink.write(text)


class PrintSink:
    """Collects everything a program prints, up to ``cap`` characters."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def write(self, text: str) -> None:
        room = self.cap - self.size
        if len(text) > room:
            text, self.truncated = text[:max(room, 0)], True
        if text:
            self.parts.append(text)
            self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts) + ("\n[output truncated]" if self.truncated else "")


def build_globals(proxy_type: type, proxy_attr: Callable[[Any, str], Any],
                  deny: Callable[[str], Any], sink: PrintSink) -> dict[str, Any]:
    """The restricted globals a program runs under.

    ``proxy_attr(proxy, name)`` resolves an attribute of the ImagePatch proxy (it enforces the
    API list); ``deny(message)`` handles every refused access and must not return normally.
    """
    math_ns = _restricted_math()
    formatter = SafeFormatter(deny)

    def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
        if type(name) is not str or name.startswith("_"):
            return deny(f"attribute {name!r} is not allowed")
        kind = type(obj)
        if kind is proxy_type:
            return proxy_attr(obj, name)
        if kind is str and name in ("format", "format_map"):
            return formatter.bound(obj, name)
        if obj is math_ns and not name.startswith("_"):
            return getattr(obj, name)
        if name in SAFE_ATTRS.get(kind, ()) or _user_defines(obj, name):
            return getattr(obj, name)
        if isinstance(obj, BaseException) and name == "args":
            return obj.args
        return deny(f"attribute `{name}` of a {kind.__name__} is not allowed")

    def guarded_getitem(obj: Any, key: Any) -> Any:
        if type(obj) in _SUBSCRIPTABLE:
            return obj[key]
        return deny(f"indexing a {type(obj).__name__} is not allowed")

    def guarded_write(obj: Any) -> Any:
        if type(obj) in _WRITABLE or type(obj) is SandboxClass or type(type(obj)) is SandboxClass:
            return obj
        return deny(f"changing a {type(obj).__name__} is not allowed")

    def guarded_iter(obj: Any) -> Any:
        if type(obj) is proxy_type:
            return deny("an ImagePatch is not iterable; use find(name) to get a list")
        return iter(obj)

    def inplacevar(op: str, x: Any, y: Any) -> Any:
        if op not in _INPLACE:
            return deny(f"operator {op} is not allowed")
        return _INPLACE[op](x, y)

    def guarded_import(name: str, glb: Any = None, loc: Any = None, fromlist: Any = (),
                       level: int = 0) -> Any:
        if name in ALLOWED_IMPORTS and level == 0:
            return math_ns
        return deny(f"import of {name!r} is not allowed (only math)")

    def capped_range(*args: int) -> range:
        r = range(*args)
        if len(r) > RANGE_CAP:
            raise ValueError(f"range of {len(r)} items exceeds the sandbox cap of {RANGE_CAP}")
        return r

    def guarded_build_class(func: Any, name: str, *bases: Any, **kwargs: Any) -> Any:
        if kwargs.get("metaclass") is not SandboxClass or len(kwargs) != 1:
            return deny(f"class {name}: keyword arguments in a class statement are not allowed")
        for base in bases:
            if not _allowed_base(base):
                shown = base.__name__ if isinstance(base, type) else type(base).__name__
                return deny(f"class {name} may not subclass {shown}; subclass only object, "
                            "your own classes or an exception")
        return builtins.__build_class__(func, name, *bases, **kwargs)

    safe = dict(_SAFE_BUILTINS)
    safe.update(range=capped_range, __import__=guarded_import, __build_class__=guarded_build_class)
    return {
        "__builtins__": safe,
        "__name__": "program",
        "__metaclass__": SandboxClass,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_write_": guarded_write,
        "_getiter_": guarded_iter,
        "_inplacevar_": inplacevar,
        "_apply_": lambda f, *a, **k: f(*a, **k),
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_print_": lambda _getattr=None: _Printer(sink),
    }
