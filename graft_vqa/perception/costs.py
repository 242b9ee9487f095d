"""What each kind of work behind the ImagePatch API costs, for the sandbox's per-program budget.

API members charge these (``graft_vqa.api.charge``) before they work, so a program whose API use
would cost too much is stopped before the host does the work. The unit is
``graft_vqa.api.COST_UNIT``: about one microsecond of host CPU on the development machine, as
``bench/api_costs.py`` measures (a fixed scale, so a budget does not depend on machine load).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiCosts:
    """What each kind of API work costs, in units of :data:`graft_vqa.api.COST_UNIT` (about one
    microsecond of host CPU on the development machine, measured by ``bench/api_costs.py``)."""

    text_encoded: float = 20_000.0  # per name or option whose text a score needs (the text tower)
    pixel_scored: float = 0.01  # per tile pixel of a score map for a name not cached (map, resize)
    pixel_segmented: float = 0.02  # per pixel of the box find thresholds and labels for a new (box, name)
    instance_refined: float = 100_000.0  # per component SAM refines (a prompt through SAM's decoder)
    patch_traced: float = 1_000.0  # per patch outline traced (once per patch object)
    pixel_traced: float = 0.05  # per pixel of a patch's box traced into its outline
    pixel_masked: float = 0.001  # per tile pixel a mask operation touches (area, size, shape, coverage)
    pair_checked: float = 2.0  # per pair of outlines whose exact distance is computed
    patch_related: float = 5.0  # per patch filter_related indexes or compares by centre


COSTS = ApiCosts()
"""The costs every ImagePatch API member charges."""
