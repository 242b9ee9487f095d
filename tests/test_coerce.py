"""Answer coercion: typed values in, normalised answers out, failures never become "no"."""
from __future__ import annotations

import numpy as np
import pytest

from graft_vqa.coerce import coerce, format_area
from graft_vqa.core.errors import ProgramError


@pytest.mark.parametrize("value, answer, kind", [
    (True, "yes", "bool"), (False, "no", "bool"), (np.bool_(True), "yes", "bool"),
    (0, "0", "count"), (17, "17", "count"), (np.int64(4), "4", "count"),
    ("Yes", "yes", "bool"), (" no. ", "no", "bool"), ("12", "12", "count"),
    ("Urban", "urban", "text"), ("10632m2", "10632 m2", "area_m2"),
])
def test_plain_values(value, answer, kind):
    out = coerce(value)
    assert (out.answer, out.kind) == (answer, kind)


def test_float_is_area_only_when_the_program_measures_area():
    program = "def execute_command(image_patch):\n    return image_patch.coverage_m2('water')\n"
    out = coerce(1520.4, program=program)
    assert (out.answer, out.value, out.kind) == ("1520 m2", 1520.4, "area_m2")
    assert coerce(3.0).kind == "count"
    assert coerce(2.5).answer == "2.5"


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}, float("nan"), -3, float("inf")])
def test_non_answers_are_errors_not_no(value):
    with pytest.raises(ProgramError):
        coerce(value, program="x.area_m2")


def test_format_area_rounds_to_whole_square_metres():
    assert format_area(0.4) == "0 m2"
    assert format_area(10631.6) == "10632 m2"


@pytest.mark.parametrize("text", ["²", "5²", "٣", "①"])
def test_non_ascii_digits_stay_text_instead_of_crashing(text):
    out = coerce(text)
    assert (out.answer, out.value, out.kind) == (text, text, "text")
