"""Adversarial programs: every one must end refused, timed out, out of memory or in error,
never ``ok``, and never with the fake model's secret in what comes back."""
from __future__ import annotations

import pytest

from graft_vqa import sandbox
from tests.test_sandbox_fakes import SECRET, FakePatch, program as P

R, T, M, E = "refused", "timeout", "memory", "error"
FAST = {"timeout_s": 1.0}
SMALL = {"timeout_s": 2.0, "memory_mb": 64}


def case(name: str, source: str, expected: str | set[str], **kwargs: object) -> object:
    exp = {expected} if isinstance(expected, str) else set(expected)
    return pytest.param(source, exp, kwargs, id=name)


IMPORTS = [
    case("import-os", P("import os\nreturn os.listdir('/')"), R),
    case("import-sys", P("import sys\nreturn sys.modules"), R),
    case("import-subprocess", P("import subprocess\nreturn subprocess.run(['id'])"), R),
    case("import-builtins", P("import builtins\nreturn builtins.open"), R),
    case("from-os-import", P("from os import system\nreturn system('id')"), R),
    case("dunder-import-call", P("return __import__('os').system('id')"), R),
    case("import-socket", P("import socket\nreturn socket.socket()"), R),
    case("import-importlib", P("import importlib\nreturn importlib.import_module('os')"), R),
    case("math-star-import", P("return 1", header="from math import *\n"), R),
    case("math-submodule", P("import math.os\nreturn 1"), R),
    case("relative-import", P("return 1", header="from . import api\n"), R),
    case("math-loader", P("import math\nreturn math.__loader__"), R),
    case("import-urllib", P("import urllib.request\nreturn urllib.request.urlopen('http://x')"), R),
    case("import-inside-try", P("try:\n    import os\nexcept ImportError:\n    return 0"), R),
]

DUNDERS = [
    case("patch-class", P("return image_patch.__class__"), R),
    case("subclasses-walk", P("return ().__class__.__bases__[0].__subclasses__()"), R),
    case("func-globals", P("return execute_command.__globals__"), R),
    case("builtins-name", P("return __builtins__"), R),
    case("mro-walk", P("return [].__class__.__mro__"), R),
    case("patch-dict", P("return image_patch.__dict__"), R),
    case("lambda-code", P("return (lambda: 0).__code__"), R),
    case("type-of-patch", P("return type(image_patch)"), E),
    case("object-subclasses", P("return object.__subclasses__()"), R),
    case("dunder-name", P("return __name__"), R),
    case("walrus-underscore", P("return (_x := 1)"), R),
    case("method-self", P("return image_patch.find.__self__"), R),
    case("int-dunder-add", P("return (1).__add__(2)"), R),
    case("class-mro-method", P("return A.mro()", header="class A:\n    pass\n"), R),
    case("class-slots", P("return A()", header="class A:\n    __slots__ = ()\n"), R),
    case("class-getattribute", P("return A()", header="class A:\n    def __getattribute__(self, n):\n        return 1\n"), R),
    case("metaclass-kw", P("return A", header="class A(metaclass=list):\n    pass\n"), R),
    case("super-call", P("return super()"), R),
    case("builtin-subclass-method", P("return L().copy()", header="class L(list):\n    pass\n"), R),
]

FORMAT = [
    case("str-format-class", P('return "{0.__class__}".format(image_patch)'), R),
    case("str-format-api", P('return "{0.find}".format(image_patch)'), R),
    case("format-map", P('return "{x.scorer}".format_map({"x": image_patch})'), R),
    case("format-bound-later", P('f = "{0.__globals__}".format\nreturn f(execute_command)'), R),
    case("fstring-dunder", P('return f"{image_patch.__class__}"'), R),
    case("fstring-format-inside", P('return f"{\'{0.scorer}\'.format(image_patch)}"'), R),
    case("fstring-private", P('return f"{image_patch._model}"'), R),
    case("str-type-attr", P('return str.format("{0.scorer}", image_patch)'), R),
]

_LEAK = "{0.__globals__[_getattr_].__globals__[sys].modules[os].environ[SECRET_TOKEN_X]}"
_MIXIN = "class B:\n    format = None\n    format_map = None\nclass C(str, B):\n    pass\ndef f():\n    pass\n"
# A built-in base earlier in the MRO wins over a program class that names the same attribute.
MRO = [
    case("str-subclass-format", P(f'leak = C("{_LEAK}")\nreturn leak.format(f)', header=_MIXIN), R),
    case("str-subclass-format-map",
         P(f'leak = C("{_LEAK.replace("0.", "x.")}")\nreturn leak.format_map({{"x": f}})', header=_MIXIN), R),
    case("str-subclass-class-format", P(f'return C.format(C("{_LEAK}"), f)', header=_MIXIN), R),
    case("str-subclass-own-method",
         P(f'return S("{_LEAK}").go(f)',
           header="class S(str):\n    def go(self, g):\n        return self.format(g)\ndef f():\n    pass\n"), R),
    case("dict-subclass-collision", P("return sorted(D(a=1).keys())",
                                      header="class B:\n    keys = None\nclass D(dict, B):\n    pass\n"), R),
    case("list-subclass-collision", P("return L([1]).copy()",
                                      header="class B:\n    copy = None\nclass L(list, B):\n    pass\n"), R),
    case("exception-subclass-collision",
         P("return E('x').with_traceback(None) is not None",
           header="class B:\n    with_traceback = None\nclass E(ValueError, B):\n    pass\n"), R),
]

INTROSPECTION = [
    case("getattr-private", P("return getattr(image_patch, '_model')"), R),
    case("setattr", P("setattr(image_patch, 'x', 1)\nreturn 1"), R),
    case("vars", P("return vars(image_patch)"), R),
    case("dir", P("return dir(image_patch)"), R),
    case("globals", P("return globals()"), R),
    case("locals", P("return locals()"), R),
    case("delattr", P("delattr(image_patch, 'find')\nreturn 1"), R),
    case("hasattr", P("return hasattr(image_patch, 'secret')"), R),
]

FRAMES = [
    case("sys-getframe", P("import sys\nreturn sys._getframe(0).f_globals"), R),
    case("traceback-frame", P("try:\n    1 / 0\nexcept Exception as e:\n    return e.__traceback__.tb_frame"), R),
    case("with-traceback", P("try:\n    1 / 0\nexcept Exception as e:\n    return e.with_traceback(None)"), R),
    case("generator-frame", P("g = (x for x in [1])\nreturn g.gi_frame.f_back"), R),
    case("generator-code", P("g = (x for x in [1])\nreturn g.gi_code"), R),
    case("generator-send", P("g = (x for x in [1])\nreturn g.send(None)"), R),
    case("yield-generator", P("return list(gen())", header="def gen():\n    yield 1\n"), R),
    case("yield-from", P("return list(gen())", header="def gen():\n    yield from [1]\n"), R),
    case("function-attr", P("return execute_command.func_globals"), R),
    case("trystar", P("try:\n    pass\nexcept* ValueError:\n    pass\nreturn 1"), R),
    case("async-def", P("return 1", header="async def f():\n    pass\n"), R),
    case("nonlocal", P("x = 1\ndef f():\n    nonlocal x\n    x = 2\nf()\nreturn x"), R),
]

CODE = [
    case("exec", P("exec('import os')\nreturn 1"), R),
    case("eval", P("return eval('1+1')"), R),
    case("compile", P("return compile('1', 'x', 'eval')"), R),
    case("eval-alias", P("e = eval\nreturn e('1')"), R),
    case("breakpoint", P("breakpoint()\nreturn 1"), R),
    case("match-statement", P("match 1:\n    case 1:\n        return 1"), R),
]

IO = [
    case("open-write", P("open('/tmp/pwned', 'w').write('x')\nreturn 1"), R),
    case("open-read", P("return open('/etc/passwd').read()"), R),
    case("with-open", P("with open('/etc/hostname') as f:\n    return f.read()"), R),
    case("print-to-file", P("print('x', file=None)\nreturn 1"), E),
    case("bytes-decode", P("return b'abc'.decode()"), R),
    case("memoryview", P("return memoryview(b'abc')"), R),
]

RESOURCES = [
    case("while-true-pass", P("while True:\n    pass"), T, **FAST),
    case("counting-forever", P("x = 0\nwhile x >= 0:\n    x += 1"), T, **FAST),
    case("pow-10-10-8", P("return 10 ** 10 ** 8"), T, **FAST),
    case("factorial-bomb", P("import math\nreturn math.factorial(10 ** 8)"), {T, M}, **FAST),
    case("three-arg-free-pow", P("return pow(7, 10 ** 9)"), {T, M}, **FAST),
    case("module-level-loop", P("return 1", header="while True:\n    pass\n"), T, **FAST),
    case("str-repeat-bomb", P("return 'a' * 10 ** 10"), M, **SMALL),
    case("list-repeat-bomb", P("return [0] * 10 ** 10"), M, **SMALL),
    case("append-bomb", P("x = []\nwhile True:\n    x.append('y' * 10 ** 6)"), M, **SMALL),
    case("dict-bomb", P("return {i: [i] for i in range(10 ** 7)}"), {M, T}, **SMALL),
    case("center-bomb", P("return 'a'.center(10 ** 10)"), M, **SMALL),
    case("range-cap", P("return list(range(10 ** 9))"), E),
    case("recursion", P("return f(0)", header="def f(n):\n    return f(n + 1)\n"), E),
    case("mutual-recursion", P("return a(0)", header="def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\n"), E),
    case("lambda-recursion", P("f = lambda n: f(n + 1)\nreturn f(0)"), E),
    case("deep-nesting-parse", "def execute_command(image_patch):\n    return " + "(" * 400 + "1" + ")" * 400 + "\n", E),
]

OUTPUTS = [
    case("return-100mb", P("return 'a' * (100 * 2 ** 20)"), E),
    case("return-wide-list", P("return [list(range(1000))] * 1000"), E),
    case("return-self-reference", P("x = []\nx.append(x)\nreturn x"), E),
    case("return-function", P("return execute_command"), E),
    case("return-api-method", P("return image_patch.find"), E),
    case("return-object", P("return A()", header="class A:\n    pass\n"), E),
    case("return-int-keys", P("return {1: 2}"), E),
    case("return-huge-int", P("return 10 ** 100000"), E),
    case("huge-api-argument", P("return image_patch.find('x' * 10 ** 6)"), E),
]

PATCH = [
    case("patch-scorer", P("return image_patch.scorer"), R),
    case("patch-model", P("return image_patch._model"), R),
    case("patch-secret", P("return image_patch.secret()"), R),
    case("found-model", P("return image_patch.find('car')[0]._model.weights"), R),
    case("found-scorer", P("return image_patch.find('car')[0].scorer.weights"), R),
    case("found-secret", P("return image_patch.find('car')[0].secret()"), R),
    case("patch-x-attr", P("return image_patch.x"), R),
    case("api-method-attr", P("m = image_patch.find\nreturn m.func"), R),
    case("patch-index", P("return image_patch[0]"), R),
    case("patch-iterate", P("for p in image_patch:\n    pass\nreturn 1"), R),
    case("patch-write", P("image_patch.label = 'x'\nreturn 1"), R),
    case("patch-delete", P("del image_patch.find\nreturn 1"), R),
    case("forged-handle", P("return image_patch.left_of({'$patch': 99})"), R),
    case("secret-swallowed", P("try:\n    return image_patch.secret()\nexcept:\n    return 'caught'"), R),
    case("format-swallowed", P("try:\n    return '{0.scorer}'.format(image_patch)\nexcept Exception:\n    return 'caught'"), R),
    case("sort-key-secret", P("ps = image_patch.find('car')\nps.sort(key=lambda p: p.secret())\nreturn 1"), R),
    case("non-plain-argument", P("return image_patch.find(lambda: 0)"), E),
    case("call-budget", P("n = 0\nfor i in range(1000):\n    n += image_patch.count('car')\nreturn n"), E, call_budget=50),
    case("call-budget-swallowed", P("n = 0\nfor i in range(1000):\n    try:\n        n += image_patch.count('car')\n    except Exception:\n        pass\nreturn n"), E, call_budget=50),
    case("math-mutation", P("import math\nmath.pi = 3\nreturn math.pi"), R),
    case("builtin-mutation", P("sorted.cache = 1\nreturn 1"), R),
    case("no-entry-point", "def main(image_patch):\n    return 1\n", E),
    case("syntax-error", P("return (1"), E),
    case("too-long", P("return 1") + "#" * 200_000, E),
]

# Issue 12: the programs of the second security review, by item.
CPU = {"timeout_s": 30.0, "cpu_s": 1.0}  # the wall clock is far away: the CPU limit must stop these
ISSUE_12 = [
    # 1. host time: API work counts against the wall clock and a cost budget
    case("api-slow-wall-clock", P("return image_patch.slow(60)"), T, timeout_s=1.0),
    case("api-cost-loop", P("n = 0\nfor i in range(100):\n    n = image_patch.costly(10 ** 6)\nreturn n"), E,
         cost_budget=10 ** 7),
    case("api-cost-swallowed", P("for i in range(100):\n    try:\n        image_patch.costly(10 ** 6)\n"
                                 "    except Exception:\n        pass\nreturn 1"), E, cost_budget=10 ** 7),
    case("api-cost-swallowed-by-api", P("return image_patch.swallow_cost(10 ** 12)"), E, cost_budget=10 ** 7),
    # 2. runaway loops in the program itself
    case("cpu-while-true", P("while True:\n    pass"), T, **CPU),
    case("cpu-pow-tower", P("return 10 ** 10 ** 8"), T, **CPU),
    case("cpu-busy-wait", P("t = 0\nwhile t < 10 ** 15:\n    t = t + 1\nreturn t"), T, **CPU),
    case("cpu-loop-swallowed", P("while True:\n    try:\n        pass\n    except BaseException:\n        pass"), T, **CPU),
    # 5. forged handles in return values
    case("return-forged-handle", P("return {'$patch': 0}"), E),
    case("return-nested-forged-handle", P("return [{'a': {'$patch': 1}}]"), E),
    case("return-patch", P("return image_patch"), E),
    case("return-found-patches", P("return image_patch.find('car')"), E),
    case("argument-forged-handle", P("return image_patch.left_of({'$patch': 0})"), R),
    # 8. augmented assignment and str.format keep every guard
    case("augassign-patch-attr", P("image_patch.x += 1\nreturn 1"), R),
    case("augassign-patch-property", P("image_patch.left += 1\nreturn 1"), R),
    case("augassign-patch-private", P("image_patch._model += 1\nreturn 1"), R),
    case("augassign-math", P("import math\nmath.pi += 1\nreturn math.pi"), R),
    case("augassign-str-item", P("s = 'ab'\ns[0] += 'x'\nreturn s"), R),
    case("augassign-tuple-item", P("t = (1, 2)\nt[0] += 1\nreturn t"), R),
    case("augassign-function-attr", P("execute_command.calls += 1\nreturn 1"), R),
    case("augassign-builtin-attr", P("len.x += 1\nreturn 1"), R),
    case("augassign-dunder-attr", P("a = A()\na.__class__ += 1\nreturn 1", header="class A:\n    pass\n"), R),
    case("augassign-slice", P("x = [1, 2]\nx[0:1] += [5]\nreturn x"), R),
    case("augassign-swallowed", P("try:\n    image_patch.x += 1\nexcept Exception:\n    pass\nreturn 1"), R),
    case("format-index", P("return '{0[0]}'.format(['a'])"), R),
    case("format-kw-attr", P("return '{x.find}'.format(x=image_patch)"), R),
    case("format-nested-attr", P("return '{:{w.real}}'.format(1, w=5)"), R),
    case("format-map-index", P("return '{x[k]}'.format_map({'x': {'k': 1}})"), R),
    case("format-bound-then-called", P("f = '{0.__class__}'.format\nreturn f(1)"), R),
    case("format-builtin-dunder", P("return format(image_patch, '{0.__class__}')"), E),
    case("format-width-bomb", P("return '{:>3000000000}'.format(1)"), M, **SMALL),
    # 9. an over-limit argument is an ordinary (here uncaught) error, not an invalid message
    case("argument-over-limit-escaped", P("return image_patch.find(chr(0) * 60000)"), E),
]

ALL = (IMPORTS + DUNDERS + FORMAT + MRO + INTROSPECTION + FRAMES + CODE + IO + RESOURCES + OUTPUTS + PATCH
       + ISSUE_12)


def test_there_are_at_least_sixty_adversarial_programs() -> None:
    assert len(ALL) >= 60


@pytest.mark.parametrize("source, expected, kwargs", ALL)
def test_adversarial_program_is_stopped(source: str, expected: set[str], kwargs: dict) -> None:
    FakePatch.secret_calls = 0
    result = sandbox.run(source, FakePatch(), **kwargs)
    assert result.status != "ok"
    assert result.status in expected, (result.status, result.error)
    assert isinstance(result.error, str) and result.error
    assert SECRET not in repr(result.value) + result.error + result.stdout
    assert FakePatch.secret_calls == 0
    if result.line is not None:
        quoted = source.splitlines()[result.line - 1].strip()[:100]
        assert result.error.startswith(f"line {result.line}: `")
        assert quoted in result.error


def test_builtin_base_cannot_leak_a_host_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN_X", "env-secret-5d1c")
    zygote = sandbox.Zygote()  # started after the variable is set, so it would inherit it
    try:
        for source in (MRO[0].values[0], MRO[1].values[0], MRO[2].values[0]):
            result = sandbox.run(source, FakePatch(), zygote=zygote)
            assert result.status == "refused", (result.status, result.value, result.error)
            assert "env-secret-5d1c" not in repr(result.value) + result.error + result.stdout
    finally:
        zygote.close()


def test_state_does_not_leak_between_programs() -> None:
    setter = P("global LEAK\nLEAK = 'from program 1'\nCACHE.append(1)\nreturn len(CACHE)",
               header="CACHE = []\n")
    reader = P("return [LEAK]")
    first = sandbox.run(setter, FakePatch())
    assert (first.status, first.value) == ("ok", 1)
    second = sandbox.run(reader, FakePatch())
    assert second.status == "error" and "NameError" in second.error and "LEAK" in second.error
    again = sandbox.run(setter, FakePatch())
    assert (again.status, again.value) == ("ok", 1)


def test_refused_mutation_of_math_does_not_leak() -> None:
    assert sandbox.run(P("import math\nmath.pi = 3\nreturn 1"), FakePatch()).status == "refused"
    after = sandbox.run(P("import math\nreturn math.pi"), FakePatch())
    assert after.status == "ok" and after.value == pytest.approx(3.141592653589793)


def test_print_flood_is_capped() -> None:
    result = sandbox.run(P("for i in range(20000):\n    print('x' * 100)\nreturn 1"), FakePatch(),
                         max_stdout_bytes=1000)
    assert result.status == "ok" and result.value == 1
    assert 1000 <= len(result.stdout) <= 1000 + 40 and result.stdout.endswith("[output truncated]")


def test_call_budget_message_quotes_the_line_and_counts() -> None:
    src = P("n = 0\nfor i in range(100):\n    n += image_patch.count('car')\nreturn n")
    result = sandbox.run(src, FakePatch(), call_budget=10)
    assert result.status == "error" and result.calls == 11
    assert result.error.startswith("line 4: `n += image_patch.count('car')`:")
    assert "call_budget" in result.error
