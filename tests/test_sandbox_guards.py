"""Layer 1 on its own, in this process: attribute resolution by MRO, allowed class bases, compile errors.

The classes here are built with the sandbox's metaclass directly, so the MRO rule is checked even
without the class-statement guard that refuses built-in bases in a real program.
"""
from __future__ import annotations

import pytest

from graft_vqa.sandbox.guards import PrintSink, SandboxClass, build_globals
from graft_vqa.sandbox.policy import compile_program


class Denied(Exception):
    """Raised by the test ``deny`` (the child's ``deny`` ends the program instead)."""


class _Proxy:
    """A stand-in proxy type; no test reads its attributes."""


def _deny(message: str) -> None:
    raise Denied(message)


@pytest.fixture()
def glb() -> dict:
    return build_globals(_Proxy, lambda proxy, name: None, _deny, PrintSink(1000))


def test_a_builtin_base_earlier_in_the_mro_wins_and_is_refused(glb: dict) -> None:
    get = glb["_getattr_"]
    mixin = SandboxClass("B", (object,), {"format": None, "format_map": None, "mine": 5})
    leaky = SandboxClass("C", (str, mixin), {})
    for name in ("format", "format_map"):
        with pytest.raises(Denied):
            get(leaky("{0}"), name)
        with pytest.raises(Denied):
            get(leaky, name)  # class-level C.format
    assert get(leaky("x"), "mine") == 5  # only the program's own member is reachable


def test_a_program_class_first_in_the_mro_is_allowed(glb: dict) -> None:
    get = glb["_getattr_"]
    mixin = SandboxClass("B", (object,), {"format": "program's own"})
    first = SandboxClass("D", (mixin, str), {})
    assert get(first("x"), "format") == "program's own"
    assert get(first, "format") == "program's own"


def test_instance_attributes_count_only_when_no_class_holds_the_name(glb: dict) -> None:
    get = glb["_getattr_"]
    plain = SandboxClass("P", (object,), {})()
    plain.value = 3
    assert get(plain, "value") == 3
    shadowing = SandboxClass("Q", (str,), {})("text")
    shadowing.format = "shadow"  # the instance dict shadows str.format, but str still defines it
    with pytest.raises(Denied):
        get(shadowing, "format")
    with pytest.raises(Denied):
        get(SandboxClass("R", (object,), {}), "mro")  # found on the metaclass, not the class


def _exec(glb: dict, source: str) -> dict:
    code, message, _, _ = compile_program(source)
    assert code is not None, message
    exec(code, glb)  # noqa: S102 - restricted code under the guards, trusted test input
    return glb


@pytest.mark.parametrize("base", ["str", "dict", "list", "int", "tuple", "set", "object()"])
def test_classes_may_not_subclass_builtins(glb: dict, base: str) -> None:
    with pytest.raises(Denied, match="may not subclass"):
        _exec(glb, f"class C({base}):\n    pass\n")


def test_classes_may_subclass_object_their_own_classes_and_exceptions(glb: dict) -> None:
    ns = _exec(glb, "class A:\n    n = 1\nclass B(A):\n    pass\nclass E(ValueError):\n    pass\n"
                    "class F(E, B):\n    pass\nresult = (B.n, isinstance(F(), ValueError))\n")
    assert ns["result"] == (1, True)


def test_a_refused_class_quotes_its_own_line() -> None:
    code, message, _, _ = compile_program("x = 1\ny = 2\nclass C:\n    pass\n")
    assert code is not None, message
    bodies = [const for const in code.co_consts if hasattr(const, "co_firstlineno")]
    assert [body.co_firstlineno for body in bodies] == [3]  # the class body starts on its own line


@pytest.mark.parametrize("depth", [300, 2000, 4000])
def test_deeply_nested_programs_are_errors_not_crashes(depth: int) -> None:
    code, message, line, refused = compile_program(
        "def execute_command(image_patch):\n    return " + "-" * depth + "1\n")
    assert code is None and not refused
    assert "RecursionError" in message
