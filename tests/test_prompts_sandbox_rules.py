"""The system prompt's sandbox rules are true (issue 12, item 8): every construct it calls allowed
runs in the real sandbox, every construct it calls refused is refused there."""
from __future__ import annotations

import pytest

from graft_vqa import sandbox
from tests.test_sandbox_fakes import OBJECTS, FakePatch, program as P

try:  # the prompt loader's home before and after the package restructure (issue 11)
    from graft_vqa.planner.prompts import template_text
except ImportError:  # pragma: no cover - before the move
    from prompts import template_text

AREA = OBJECTS["tree"][0]
SETUP = "area = image_patch.find('tree')[0].area_m2\n"

ALLOWED = {
    "`counts[name] += 1`": ("counts = {'car': 0}\nname = 'car'\ncounts[name] += 1\nreturn counts", {"car": 1}),
    "`self.total += area`": ("t = Total()\nt.add(area)\nt.add(area)\nreturn t.total", 2 * AREA),
    "`'{:.1f} m2'.format(area)`": ("return '{:.1f} m2'.format(area)", f"{AREA:.1f} m2"),
    "`f'{area:.1f}'`": ("return f'{area:.1f}'", f"{AREA:.1f}"),
    "`format(area, '.2f')`": ("return format(area, '.2f')", f"{AREA:.2f}"),
}
TOTAL = "class Total:\n    def __init__(self):\n        self.total = 0.0\n    def add(self, area):\n        self.total += area\n"

REFUSED = {
    "`'{0.area_m2}'.format(patch)`": "patch = image_patch.find('tree')[0]\nreturn '{0.area_m2}'.format(patch)",
    "`'{0[0]}'.format(patches)`": "patches = image_patch.find('car')\nreturn '{0[0]}'.format(patches)",
    "`getattr`": "return getattr(image_patch, 'find')",
    "`type`": "return type(image_patch)",
    "`yield`": "def g():\n    yield 1\nreturn list(g())",
    "subclass str": "class S(str):\n    pass\nreturn S('x')",
}


def test_the_prompt_states_the_rules() -> None:
    text = template_text("system")
    for snippet in [*ALLOWED, *[k for k in REFUSED if k.startswith("`")]]:
        assert snippet in text, snippet
    assert "Never return an ImagePatch or a list" in text and "filter_related" in text


@pytest.mark.parametrize("snippet", list(ALLOWED))
def test_what_the_prompt_allows_runs(snippet: str) -> None:
    body, expected = ALLOWED[snippet]
    result = sandbox.run(P(SETUP + body, header=TOTAL), FakePatch())
    assert result.status == "ok", result.error
    assert result.value == pytest.approx(expected) if isinstance(expected, float) else result.value == expected


@pytest.mark.parametrize("snippet", list(REFUSED))
def test_what_the_prompt_refuses_is_refused(snippet: str) -> None:
    result = sandbox.run(P(REFUSED[snippet]), FakePatch())
    assert result.status in ("refused", "error") and result.status != "ok", (result.status, result.value)
    if snippet.startswith("`'{"):
        assert result.status == "refused" and "inside a format field" in result.error
