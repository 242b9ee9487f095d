"""A fake ImagePatch for the sandbox tests (so they do not depend on the real one), and its own checks.

``FakePatch`` holds known objects per name; its API (marked with ``graft_vqa.api.api``) mirrors
the real one's shape. It also carries things a program must never reach: ``_model``,
``scorer`` and the non-API method ``secret()``, each holding or returning ``SECRET``.
"""
from __future__ import annotations

import time

from graft_vqa.api import api, api_members, charge
from graft_vqa.core.errors import AreaUnavailableError

SECRET = "TOP-SECRET-MODEL-TOKEN-7f3a"
"""A marker that must never appear in anything a sandboxed program returns or prints."""

OBJECTS = {"car": [12.5, 30.0, 7.5], "tree": [50.0], "pool": []}
"""Areas (m²) of the fake objects per name, in the order ``find`` returns them."""


class _Model:
    """Stands in for the GRAFT model the real patch holds."""

    weights = SECRET


class FakePatch:
    """A fake ImagePatch: ``find(name)`` returns one child patch per area in ``OBJECTS[name]``."""

    secret_calls = 0  # how often the non-API method ran (must stay 0)
    costly_calls = 0  # how often costly() ran to its end
    api_log: list[str] = []  # names of API members the host called, in order

    def __init__(self, objects: dict[str, list[float]] | None = None, area: float = 1000.0,
                 label: str = "root", x: float = 0.0) -> None:
        self.objects = OBJECTS if objects is None else objects
        self._area = area
        self._label = label
        self.x = x
        self._model = _Model()
        self.scorer = _Model()

    @api
    def find(self, name: str) -> list["FakePatch"]:
        """Patches of ``name``, left to right."""
        FakePatch.api_log.append("find")
        return [FakePatch({}, a, name, x=10.0 * i) for i, a in enumerate(self.objects.get(name, []))]

    @api
    def exists(self, name: str) -> bool:
        """Whether any ``name`` is present."""
        FakePatch.api_log.append("exists")
        return bool(self.objects.get(name))

    @api
    def count(self, name: str) -> int:
        """How many ``name`` there are."""
        FakePatch.api_log.append("count")
        return len(self.objects.get(name, []))

    @property
    @api
    def area_m2(self) -> float:
        """Area of this patch in m²."""
        FakePatch.api_log.append("area_m2")
        return self._area

    @property
    @api
    def label(self) -> str:
        """What this patch was found as."""
        return self._label

    @api
    def left_of(self, other: "FakePatch") -> bool:
        """True when this patch lies left of ``other`` (an ImagePatch argument crossing the channel)."""
        return self.x < other.x

    @api
    def fail(self) -> None:
        """Always raises, like an area query on a tile without georeferencing."""
        raise AreaUnavailableError("this tile has no georeferencing; pass gsd_m")

    @api
    def opaque(self) -> object:
        """Returns something that is not plain data."""
        return _Model()

    @api
    def slow(self, seconds: float) -> float:
        """Sleeps on the host in 10 ms steps, charging nothing but honouring the deadline (as a
        long API call does: each ``charge`` checks the program's wall clock)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            charge(0.0, "waiting")
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        return seconds

    @api
    def costly(self, units: float) -> int:
        """Charges ``units`` of API cost before doing (no) work; returns how often it ran."""
        charge(float(units), "pairs checked")
        FakePatch.costly_calls += 1
        return FakePatch.costly_calls

    @api
    def swallow_cost(self, units: float) -> str:
        """Charges ``units`` but catches the limit, as careless API code might."""
        try:
            charge(float(units), "pixels scored")
        except Exception:  # noqa: BLE001 - the point of this fake
            return "swallowed"
        return "charged"

    def secret(self) -> str:
        """Not part of the API."""
        FakePatch.secret_calls += 1
        return SECRET


def program(body: str, header: str = "") -> str:
    """Wrap an indented-free ``body`` into ``def execute_command(image_patch):``."""
    lines = body.strip("\n").splitlines()
    return header + "def execute_command(image_patch):\n" + "".join(f"    {ln}\n" for ln in lines)


def test_fake_patch_api_is_what_the_sandbox_will_allow() -> None:
    members = api_members(FakePatch)
    assert set(members) == {"find", "exists", "count", "area_m2", "label", "left_of", "fail",
                            "opaque", "slow", "costly", "swallow_cost"}
    assert "secret" not in members and "scorer" not in members
    assert isinstance(members["area_m2"], property)


def test_program_helper_indents_the_body() -> None:
    src = program("x = 1\nreturn x")
    assert src == "def execute_command(image_patch):\n    x = 1\n    return x\n"
