"""``filter_related`` without a pass over every pair of patches.

Centre relations (left of, right of, above, below) compare each patch with two extremes of the
other list; ``is_next_to`` finds candidate pairs in an STRtree of the outlines by boxes grown by
the gap, charges them, then measures their exact distances in one vectorised call. Patches are
any objects with ``horizontal_center``, ``vertical_center`` and ``polygon_px`` (shapely, pixels).

"Itself" means the same object on the ground, not the same Python object: two ``find`` calls (the
same name twice, or two names whose maps agree) return different patches for one instance, and a
patch is never next to its own copy (:func:`same_object`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from graft_vqa.api import charge
from graft_vqa.perception.costs import COSTS

Patch = Any  # an ImagePatch

NEXT_TO_GAP_PX = 2.0 * (1 + 1e-9)
"""``is_next_to``'s default: outlines at most 2 pixels apart (with float slack)."""

_CENTRE = {  # relation -> (centre attribute, True when p must be below the others' maximum)
    "is_left_of": ("horizontal_center", True),
    "is_right_of": ("horizontal_center", False),
    "is_above": ("vertical_center", False),
    "is_below": ("vertical_center", True),
}


def centre_relation(patches: list[Patch], relation: str, others: list[Patch]) -> list[Patch]:
    """``relation`` by centres: p is left of some other patch exactly when its centre is left of the
    rightmost centre among the others that are not p itself (two extremes per list, not every pair)."""
    attr, below_max = _CENTRE[relation]
    sign = 1.0 if below_max else -1.0  # compare on sign * centre: always "p < the others' maximum"
    first: tuple[float, Patch] | None = None  # the largest value among the others
    second: tuple[float, Patch] | None = None  # the largest value of a patch other than first's
    for o in others:
        value = sign * getattr(o, attr)
        if first is None or value > first[0]:
            if first is not None and first[1] is not o:
                second = first
            first = (value, o)
        elif first[1] is not o and (second is None or value > second[0]):
            second = (value, o)
    out = []
    for p in patches:
        bound = first if first is not None and first[1] is not p else second  # a copy of p ties: never "<"
        if bound is not None and sign * getattr(p, attr) < bound[0]:
            out.append(p)
    return out


def same_object(p: Patch, o: Patch) -> bool:
    """True when ``p`` and ``o`` are one object: the same patch, or the same box with the same mask."""
    if p is o:
        return True
    if getattr(p, "box", None) != getattr(o, "box", None):
        return False
    a, b = getattr(p, "instance", None), getattr(o, "instance", None)
    if a is None or b is None:
        return a is b  # two crops of one box are one region; a crop and an instance are not
    return a is b or (a.scale == b.scale and np.array_equal(a.crop, b.crop))


def next_to_any(patches: list[Patch], others: list[Patch]) -> list[Patch]:
    """``is_next_to`` (2 pixels) against any other: candidates from an STRtree of the others' outlines
    by boxes grown by the gap, charged, then their exact distances in one vectorised call."""
    other_geoms = np.array([o.polygon_px for o in others], dtype=object)
    tree = shapely.STRtree(other_geoms)
    geoms = np.array([p.polygon_px for p in patches], dtype=object)
    bounds = shapely.bounds(geoms)
    grown = shapely.box(bounds[:, 0] - NEXT_TO_GAP_PX, bounds[:, 1] - NEXT_TO_GAP_PX,
                        bounds[:, 2] + NEXT_TO_GAP_PX, bounds[:, 3] + NEXT_TO_GAP_PX)
    grown = np.where(shapely.is_empty(geoms), None, grown)  # an empty outline is next to nothing
    pi, oi = tree.query(grown)
    keep = np.array([not same_object(patches[i], others[j]) for i, j in zip(pi, oi)], dtype=bool)
    pi, oi = pi[keep], oi[keep]
    charge(len(pi) * COSTS.pair_checked, "pairs checked")
    near = shapely.distance(geoms[pi], other_geoms[oi]) <= NEXT_TO_GAP_PX
    hit = set(pi[near].tolist())
    return [p for i, p in enumerate(patches) if i in hit]
