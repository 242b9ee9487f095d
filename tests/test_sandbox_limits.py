"""Issue 12, items 1, 2 and 9: one wall clock, a cost budget, a CPU limit, and messages that say
what happened. Each test runs the kind of program that exposed the weakness."""
from __future__ import annotations

import faulthandler
import signal
import subprocess
import sys

import pytest

from graft_vqa import sandbox
from graft_vqa.api import CostMeter, charge, metered
from graft_vqa.sandbox import host
from tests.test_sandbox_fakes import FakePatch, program as P

# --- item 1: the wall clock covers host work; API calls are charged by cost ------------------------


def test_a_long_api_call_is_stopped_at_the_wall_clock_deadline() -> None:
    # The review's program spent 54 s in host-side API work with timeout_s=10.
    result = sandbox.run(P("x = image_patch.slow(30)\nreturn x"), FakePatch(), timeout_s=1.0)
    assert result.status == "timeout" and result.line == 2
    assert result.error.startswith("line 2: `x = image_patch.slow(30)`:")
    assert "1 s (timeout_s, API calls included)" in result.error
    assert result.elapsed_s < 15.0  # stopped at the deadline, long before the 30 s call would end


def test_api_cost_beyond_the_budget_ends_the_program_with_a_clear_message() -> None:
    FakePatch.costly_calls = 0
    src = P("n = 0\nfor i in range(30):\n    n = image_patch.costly(1000000)\nreturn n")
    result = sandbox.run(src, FakePatch(), cost_budget=5_000_000)
    assert result.status == "error" and result.line == 4
    assert "cost more than its budget" in result.error and "cost_budget" in result.error
    assert "pairs checked" in result.error  # says which work the units went to
    assert FakePatch.costly_calls == 5  # the call that would overrun did no work
    assert result.cost == pytest.approx(6_000_000)


def test_the_cost_limit_cannot_be_caught_by_the_program_or_swallowed_by_the_api() -> None:
    caught = P("try:\n    image_patch.costly(10 ** 9)\nexcept Exception:\n    return 'caught'\nreturn 'ran'")
    result = sandbox.run(caught, FakePatch(), cost_budget=1000)
    assert result.status == "error" and "cost_budget" in result.error
    swallowed = sandbox.run(P("return image_patch.swallow_cost(10 ** 9)"), FakePatch(), cost_budget=1000)
    assert swallowed.status == "error" and "cost_budget" in swallowed.error and swallowed.value is None


def test_within_budget_the_cost_is_reported() -> None:
    result = sandbox.run(P("return [image_patch.costly(10), image_patch.costly(5)][-1] > 0"), FakePatch())
    assert (result.status, result.value, result.cost) == ("ok", True, 15.0)


def test_charge_outside_the_sandbox_is_a_no_op_and_meters_nest() -> None:
    charge(10 ** 12, "anything")  # no program being served: nothing to charge
    outer, inner = CostMeter(100), CostMeter(10)
    with metered(outer):
        charge(50, "a")
        with metered(inner):
            charge(5, "b")
        charge(20, "a")
    assert (outer.spent, inner.spent, outer.by_kind) == (70, 5, {"a": 70})


# --- item 2: the program's own CPU time ------------------------------------------------------------

CPU = {"timeout_s": 30.0, "cpu_s": 1.0}


@pytest.mark.parametrize("source, lines", [
    (P("while True:\n    pass"), {2, 3}),
    (P("x = 0\nwhile x >= 0:\n    x += 1"), {3, 4}),
    (P("return 10 ** 10 ** 8"), {2}),
    (P("n = 0\nwhile n < 10 ** 12:\n    n = n + 1 - 1 + 1\nreturn n"), {3, 4}),
], ids=["while-true", "counting", "pow-tower", "busy-wait"])
def test_runaway_programs_end_at_the_cpu_limit_with_their_line(source: str, lines: set[int]) -> None:
    result = sandbox.run(source, FakePatch(), **CPU)
    assert result.status == "timeout" and result.line in lines, (result.status, result.error)
    assert "1 s of CPU time (cpu_s)" in result.error
    assert result.elapsed_s < 25.0  # the CPU limit, not the 30 s wall clock, even on a loaded machine


def test_the_default_cpu_limit_is_a_few_seconds() -> None:
    assert 1.0 <= host.DEFAULT_CPU_S <= 5.0


def _program_dump() -> str:
    """A real faulthandler dump of a program frame, as the child writes it at the CPU limit."""
    script = (
        "import faulthandler, sys\n"
        "code = compile('def execute_command(p):\\n    x = 1\\n    faulthandler.dump_traceback(sys.stdout)\\n',"
        " '<program>', 'exec')\n"
        "g = {'faulthandler': faulthandler, 'sys': sys}\n"
        "exec(code, g)\n"
        "g['execute_command'](None)\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout


def test_a_child_killed_by_the_kernel_at_the_cpu_limit_is_a_timeout_with_the_dumped_line() -> None:
    assert faulthandler  # the child registers it; the dump format is what this test parses
    dump = _program_dump()
    assert 'File "<program>", line 3' in dump
    session = host._Session(P("x = 1\nsorted_forever()"), FakePatch(),
                            host._Settings(30.0, 1.0, 200, 1e9, 512, 65536, 16384), deadline=1e12)
    killed = host._from_exit({"signal": signal.SIGKILL, "code": None, "cpu_s": 2.01, "dump": dump}, session)
    assert killed.status == "timeout" and killed.line == 3 and "cpu_s" in killed.error
    oom = host._from_exit({"signal": signal.SIGKILL, "code": None, "cpu_s": 0.2, "dump": ""}, session)
    assert oom.status == "memory"


# --- item 9: messages that say what happened -------------------------------------------------------


@pytest.mark.parametrize("source, size", [
    (P("return 'x' * 100000"), "98 KB"),
    (P("return 'é' * 20000"), "117 KB"),  # 6 bytes a character once JSON-escaped
    (P("return ['\\x00' * 1000] * 20"), "117 KB"),
])
def test_a_result_over_the_limit_says_it_is_too_large(source: str, size: str) -> None:
    result = sandbox.run(source, FakePatch())
    assert result.status == "error"
    assert f"the result is too large ({size}, limit 64 KB)" in result.error
    assert "invalid message" not in result.error


def test_a_result_far_over_the_limit_is_measured_no_further_than_needed() -> None:
    result = sandbox.run(P("return [list(range(1000))] * 1000"), FakePatch())
    assert result.status == "error" and "the result is too large (more than 1024 KB, limit 64 KB)" in result.error


def test_an_over_limit_argument_is_a_catchable_error() -> None:
    src = P("try:\n    image_patch.find(chr(0) * 60000)\nexcept ValueError as e:\n    return str(e)\nreturn 'sent'")
    result = sandbox.run(src, FakePatch())
    assert result.status == "ok", result.error
    assert result.value == "the arguments of find() are too large (352 KB, limit 64 KB)"
    plain = sandbox.run(P("try:\n    image_patch.find('x' * 10 ** 6)\nexcept ValueError as e:\n    return 'caught'"),
                        FakePatch())
    assert (plain.status, plain.value) == ("ok", "caught")
