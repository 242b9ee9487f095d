"""``ImagePatch``: the API generated programs use, over a tile and the ``find`` pipeline.

Coordinates follow ViperGPT: ``left``/``right`` are pixel columns, ``lower``/``upper`` pixel rows
counted **from the bottom** of the image (``lower < upper``), ends exclusive, always relative to the
whole image. ``crop`` takes coordinates relative to the patch it is called on (as in ViperGPT).
Only members marked with :func:`graft_vqa.api.api` are reachable from a program.

With an area of interest (AOI), the root patch is the AOI's bounding window and its ``area_m2`` the
AOI's area; ``find`` keeps the instances whose centroid lies inside the AOI, and areas count only
their part inside it.

Every API member charges its work with :func:`graft_vqa.api.charge` before doing it
(``perception.costs.COSTS``), so the sandbox can stop a program whose API use would cost too much
before the host does the work. ``filter_related`` relates lists through an STRtree and two extremes
per list (``perception.relations``), not pair by pair.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
from affine import Affine
from shapely.geometry import mapping

from graft_vqa.answer import Detection
from graft_vqa.api import api, charge
from graft_vqa.context import SAM_MISSING, PatchContext
from graft_vqa.core.errors import AreaUnavailableError, GraftVQAError
from graft_vqa.perception import geometry
from graft_vqa.perception.components import threshold_value
from graft_vqa.perception.costs import COSTS
from graft_vqa.perception.instances import Box, Instance, paste
from graft_vqa.perception.relations import NEXT_TO_GAP_PX, centre_relation, next_to_any

__all__ = ["IMAGE_SIDE", "RELATIONS", "SAM_MISSING", "ImagePatch", "PatchContext"]

log = logging.getLogger(__name__)

IMAGE_SIDE = 1024  # longest side read for best_text_match on a large patch (the model sees 224 px)
BOX_CELLS = 16_000_000  # a box patch larger than this many pixels is handled on coarser cells

RELATIONS = ("is_left_of", "is_right_of", "is_above", "is_below", "is_next_to")
"""The relation methods ``ImagePatch.filter_related`` accepts by name."""

class ImagePatch:
    """A region of a tile: the whole image (or the AOI's window), a crop, or an instance found by ``find``."""

    def __init__(self, tile: Any, instance: Instance | None = None, box: Box | None = None, *,
                 context: PatchContext, name: str | None = None, root: bool = False) -> None:
        self.tile = tile
        self.context = context
        self.instance = instance  # the found instance (mask crop over its box), None for the image and crops
        if box is None:
            box = instance.box if instance is not None else (0, 0, tile.width, tile.height)
        self.box: Box = tuple(int(v) for v in box)  # (left, top, right, bottom), rows from the top
        self.name = name  # the query that found this patch (None for the image and crops)
        self.score = None if instance is None else instance.score  # best score inside the instance
        self.refined = bool(instance is not None and instance.refined)  # True when SAM refined the mask
        self.is_root = root  # the whole image (or the AOI): its area is the AOI's when there is one

    def __repr__(self) -> str:
        return (f"ImagePatch(name={self.name!r}, left={self.left}, lower={self.lower}, "
                f"right={self.right}, upper={self.upper})")

    # --- finding --------------------------------------------------------------------------
    @api
    def find(self, name: str) -> list["ImagePatch"]:
        """All instances of `name` inside this patch, best score first, each with its own mask.

        Example: `buildings = image_patch.find("building")`
        """
        insts = self.context.instances(self.box, str(name))
        found = [ImagePatch(self.tile, i, context=self.context, name=str(name)) for i in insts]
        self.context.record((self.box, str(name)), found)
        return found

    @api
    def exists(self, name: str) -> bool:
        """True when at least one `name` is found in this patch.

        Example: `image_patch.exists("water")`
        """
        return len(self.find(name)) > 0

    @api
    def count(self, name: str) -> int:
        """Number of `name` instances found in this patch.

        Example: `image_patch.count("building")`
        """
        return len(self.find(name))

    @api
    def coverage_m2(self, name: str) -> float:
        """Ground area in m² covered by all `name` instances in this patch (overlaps counted once).

        Example: `image_patch.coverage_m2("parking lot")`
        """
        return float(self.context.union_area([p._as_instance() for p in self.find(name)]))

    @api
    def best_text_match(self, options: list[str]) -> str:
        """The option that best describes this patch as a whole (image-level GRAFT).

        Example: `image_patch.best_text_match(["rural", "urban"])`
        """
        options = [str(o) for o in options]
        if not options:
            raise GraftVQAError("best_text_match needs at least one option, e.g. ['rural', 'urban']")
        scorer, tile = self.context.scorer, self.tile
        if hasattr(scorer, "score_image"):
            charge(len(options) * COSTS.text_encoded, "texts encoded")
            if self.box != (0, 0, tile.width, tile.height):
                left, top, right, bottom = self.box
                tile = tile.read_window(left, top, right - left, bottom - top, max_side=IMAGE_SIDE)
            scores = np.asarray(scorer.score_image(tile, options), dtype=np.float64)
        else:  # pixel-level fallback: mean score over the patch
            scores = np.array([self._mean_score(o) for o in options])
        return options[int(np.argmax(scores))]

    @api
    def verify_property(self, name: str, property: str) -> bool:
        """True when "{property} {name}" scores above the find threshold on average over this patch
        (in relative mode, the cut that find would use on the whole image).

        Example: `car.verify_property("car", "red")`
        """
        config = self.context.find_config(str(name))  # the find settings of the thing described
        query = f"{property} {name}"
        score_map = self.context.score_map(query, config)
        cut = threshold_value(score_map, self.context.source.valid(), config)
        mean = self._mean_score(query, config)
        return bool(np.isfinite(mean) and mean >= cut)

    @api
    def crop(self, left: int, lower: int, right: int, upper: int) -> "ImagePatch":
        """The rectangle of this patch between columns left..right and rows lower..upper, counted
        from this patch's bottom-left corner (rows upwards).

        Example: `left_half = image_patch.crop(0, 0, image_patch.width // 2, image_patch.height)`
        """
        x0, x1 = sorted((int(left), int(right)))
        y0, y1 = sorted((int(lower), int(upper)))
        abs_left = min(max(self.left + x0, self.left), self.right)
        abs_right = min(max(self.left + x1, abs_left), self.right)
        abs_lower = min(max(self.lower + y0, self.lower), self.upper)
        abs_upper = min(max(self.lower + y1, abs_lower), self.upper)
        h = self.tile.height
        return ImagePatch(self.tile, None, (abs_left, h - abs_upper, abs_right, h - abs_lower),
                          context=self.context)

    # --- box coordinates (ViperGPT convention) ---------------------------------------------
    @property
    @api
    def left(self) -> int:
        """Leftmost pixel column of the patch."""
        return self.box[0]

    @property
    @api
    def lower(self) -> int:
        """Bottom edge of the patch, in pixel rows counted from the bottom of the image."""
        return self.tile.height - self.box[3]

    @property
    @api
    def right(self) -> int:
        """Right edge of the patch (exclusive pixel column)."""
        return self.box[2]

    @property
    @api
    def upper(self) -> int:
        """Top edge of the patch, in pixel rows counted from the bottom of the image (exclusive)."""
        return self.tile.height - self.box[1]

    @property
    @api
    def width(self) -> int:
        """Width of the patch's box in pixels."""
        return self.right - self.left

    @property
    @api
    def height(self) -> int:
        """Height of the patch's box in pixels."""
        return self.upper - self.lower

    @property
    @api
    def horizontal_center(self) -> float:
        """Column of the box centre."""
        return (self.left + self.right) / 2

    @property
    @api
    def vertical_center(self) -> float:
        """Row of the box centre, counted from the bottom of the image."""
        return (self.lower + self.upper) / 2

    # --- areas and attributes ----------------------------------------------------------------
    @property
    @api
    def area_m2(self) -> float:
        """Ground area of the patch in m² (its mask, or its whole box for crops and the image).

        Example: `sum(b.area_m2 for b in image_patch.find("building"))`
        """
        aoi = self.context.aoi
        if self.is_root and aoi is not None and aoi.area_m2 is not None:
            return float(aoi.area_m2)
        return float(self._area(clip=True))

    def _area(self, clip: bool) -> float:
        inst = self._as_instance()
        return self.context.area(inst.box, inst.crop, inst.scale, clip=clip)

    @property
    @api
    def size(self) -> str:
        """"small" (< 500 m²), "medium" (< 10,000 m²) or "large"; without georeferencing: under 1 %,
        under 10 % of the tile, or more.

        Example: `[p for p in image_patch.find("pond") if p.size == "large"]`
        """
        area = self._area(clip=False) if self.tile.has_area else None
        fraction = self._as_instance().pixels / float(self.tile.height * self.tile.width)
        return geometry.size_label(area, fraction)

    @property
    @api
    def shape(self) -> str:
        """"square", "rectangular", "circular" or "irregular", from the mask's geometry.

        Example: `image_patch.find("pool")[0].shape == "circular"`
        """
        crop = self._as_instance().crop
        charge(crop.size * (COSTS.pixel_masked + COSTS.pixel_traced), "pixels masked")
        return geometry.shape_label(crop)

    # --- relations -------------------------------------------------------------------------
    @api
    def is_left_of(self, other: "ImagePatch") -> bool:
        """True when this patch's centre is left of `other`'s."""
        return self.horizontal_center < other.horizontal_center

    @api
    def is_right_of(self, other: "ImagePatch") -> bool:
        """True when this patch's centre is right of `other`'s."""
        return self.horizontal_center > other.horizontal_center

    @api
    def is_above(self, other: "ImagePatch") -> bool:
        """True when this patch's centre is above (north of, in image terms) `other`'s."""
        return self.vertical_center > other.vertical_center

    @api
    def is_below(self, other: "ImagePatch") -> bool:
        """True when this patch's centre is below `other`'s."""
        return self.vertical_center < other.vertical_center

    @api
    def distance_m(self, other: "ImagePatch") -> float:
        """Shortest ground distance in metres between the two outlines (0 when they touch).

        Example: `house.distance_m(road) < 50`
        """
        a, b = self._metric_polygon(), other._metric_polygon()
        charge(COSTS.pair_checked, "pairs checked")
        if a is None or b is None:
            raise AreaUnavailableError("distances in metres need a georeferenced tile or gsd_m; "
                                       "pass gsd_m when loading this image")
        return float(a.distance(b))

    @api
    def is_next_to(self, other: "ImagePatch", max_gap_m: float | None = None) -> bool:
        """True when the outlines are at most `max_gap_m` metres apart (default: 2 pixels' width).

        Example: `any(b.is_next_to(r) for b in buildings for r in roads)`
        """
        if max_gap_m is None:  # 2 pixels, measured on the pixel grid (the same with or without a scale)
            a, b = self.polygon_px, other.polygon_px
            charge(COSTS.pair_checked, "pairs checked")
            return float(a.distance(b)) <= NEXT_TO_GAP_PX
        return self.distance_m(other) <= float(max_gap_m) * (1 + 1e-9) + 1e-9  # float slack

    @api
    def filter_related(self, patches: list["ImagePatch"], relation: str,
                       others: list["ImagePatch"]) -> list["ImagePatch"]:
        """The patches of `patches` that are `relation` ("is_left_of", "is_right_of", "is_above",
        "is_below" or "is_next_to") at least one patch of `others`, in one call instead of one per
        pair. A patch is never related to itself (nor to the same object found by another `find` call),
        so one `find` list may be passed twice.

        Example: `near_road = image_patch.filter_related(buildings, "is_next_to", image_patch.find("road"))`
        """
        if relation not in RELATIONS:
            raise ValueError(f"unknown relation {relation!r}; use one of: {', '.join(RELATIONS)}")
        kind = type(self)
        if not isinstance(patches, list) or not isinstance(others, list) or not all(
                isinstance(p, kind) for p in [*patches, *others]):
            raise TypeError("filter_related takes two lists of ImagePatch (from find) and a relation name")
        charge((len(patches) + len(others)) * COSTS.patch_related, "patches related")
        if not patches or not others:
            return []
        if not isinstance(self, ImagePatch):  # a stand-in class borrowing this method: every pair
            charge(len(patches) * len(others) * COSTS.pair_checked, "pairs checked")
            return [p for p in patches if any(o is not p and getattr(p, relation)(o) for o in others)]
        if relation == "is_next_to":
            return next_to_any(patches, others)
        return centre_relation(patches, relation, others)

    # --- geometry and export -----------------------------------------------------------------
    @functools.cached_property
    def polygon_px(self) -> Any:
        """Outline in pixel coordinates (col, row) from the top-left corner (shapely), traced once."""
        if self.instance is None:
            return geometry.box_polygon(self.box)
        inst = self.instance
        charge(COSTS.patch_traced + inst.crop.size * COSTS.pixel_traced, "outlines traced")
        to_tile = Affine.translation(inst.box[0], inst.box[1]) @ Affine.scale(inst.scale)
        return geometry.mask_polygon(inst.crop, to_tile)

    @functools.cached_property
    def polygon(self) -> Any:
        """Outline in the tile's CRS via its transform (pixel coordinates when not georeferenced)."""
        return geometry.to_map(self.polygon_px, self.tile.transform)

    @functools.cached_property
    def _metric(self) -> Any:
        return geometry.metric_geometry(self.polygon_px, self.tile)

    def _metric_polygon(self) -> Any:
        return self._metric

    def _as_instance(self) -> Instance:
        """This patch as an instance: a found instance as is; a crop, the image or the AOI window as an
        all-set crop over the box (on coarser cells when the box is huge, areas stay exact)."""
        if self.instance is not None:
            return self.instance
        left, top, right, bottom = self.box
        scale = 1
        while (right - left) * (bottom - top) > BOX_CELLS * scale * scale:
            scale *= 2
        shape = (max(0, -(-(bottom - top) // scale)), max(0, -(-(right - left) // scale)))
        return Instance(crop=np.ones(shape, dtype=bool), box=self.box, best_pixel=(top, left), score=0.0, scale=scale)

    def _mean_score(self, name: str, config: Any = None) -> float:
        """Mean score of ``name`` over this patch's mask (on the map's grid; ``config`` as in ``score_map``)."""
        scale = self.context.scale
        score_map = self.context.score_map(name, config)
        left, top, right, bottom = self.box
        charge(-(-(right - left) // scale) * -(-(bottom - top) // scale) * COSTS.pixel_masked, "pixels masked")
        cells = (left - left % scale, top - top % scale, right, bottom)
        region = paste(self._as_instance(), cells, scale)
        window = score_map[cells[1] // scale:cells[1] // scale + region.shape[0],
                           cells[0] // scale:cells[0] // scale + region.shape[1]]
        values = window[region[:window.shape[0], :window.shape[1]]]
        return float(values.mean()) if values.size else float("nan")

    @functools.cached_property
    def _outline_px(self) -> Any:
        """The outline that is reported: ``polygon_px`` clipped to the AOI, when there is one."""
        aoi = self.context.aoi
        if aoi is None or self.is_root:
            return self.polygon_px if aoi is None else aoi.geometry_px
        return self.polygon_px.intersection(aoi.geometry_px)

    @api
    def to_geojson(self) -> dict:
        """This patch as a GeoJSON Feature (map coordinates of the tile's CRS when georeferenced)."""
        props = {"name": self.name, "score": self.score, "refined": self.refined,
                 "area_m2": self.area_m2 if self.tile.has_area else None}
        if self.tile.crs is None:
            props["pixel_coordinates"] = True
        outline = geometry.to_map(self._outline_px, self.tile.transform)
        return {"type": "Feature", "geometry": mapping(outline), "properties": props}

    def detection(self) -> Detection:
        """This patch as an :class:`~graft_vqa.answer.Detection` for ``Answer.detections`` (its outline and
        area clipped to the AOI when there is one)."""
        outline = self._outline_px
        geo = mapping(geometry.to_map(outline, self.tile.transform)) if self.tile.crs is not None else None
        metric = geometry.metric_geometry(outline, self.tile)  # in metres (None without georeferencing or gsd_m)
        return Detection(name=self.name or "", score=float(self.score or 0.0), box=self.box,
                         area_m2=self.area_m2 if self.tile.has_area else None,
                         perimeter_m=float(metric.length) if metric is not None else None,
                         polygons_px=geometry.polygon_rings(outline), geometry=geo, refined=self.refined)
