"""The :class:`PatchContext`: what every ``ImagePatch`` of one tile (or scene) shares.

Models, find settings (per concept with a thresholds table), the map source (a whole tile, or a
scene window by window) and the contrast-mode source over it, the area of interest, byte-bounded
caches of score maps and instances, warnings said once, and the finds of the current question (they
become the answer's detections).

While a question runs the caches may grow to ``MAPS_BYTES`` and ``FOUND_BYTES``; when it is
answered (``end_question``) they are trimmed to ``retain_mb``, least recently used first, so names a
program used once do not outlive it unless there is room. Work done for a program is charged to it
(``graft_vqa.api.charge``, ``perception.costs.COSTS``) before it is done.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graft_vqa.answer import Detection
from graft_vqa.api import charge
from graft_vqa.config import FindConfig
from graft_vqa.core.aoi import AOI
from graft_vqa.core.lru import LRU
from graft_vqa.perception.costs import COSTS
from graft_vqa.perception.contrast import ContrastSource, load_vocabulary
from graft_vqa.perception.instances import Box, Instance, area_m2, paste
from graft_vqa.perception.protocols import MapSource, Refiner, Scorer
from graft_vqa.perception.tile_maps import TileMaps

log = logging.getLogger(__name__)

SAM_MISSING = ("SAM refinement is on but no SAM model is available: "
               "instances are the thresholded components; put SAM weights in place to refine them, "
               "or pass refine='none'")
MAPS_BYTES = 512 * 2**20  # score maps kept per context (a 4096² tile's map is 64 MiB)
FOUND_BYTES = 256 * 2**20  # instance crops kept per context
UNION_CELLS = 64_000_000  # largest grid a union of instances is drawn on at full resolution


def _instances_bytes(instances: list[Instance]) -> int:
    return sum(i.crop.nbytes + 200 for i in instances) + 100


@dataclass
class PatchContext:
    """What every patch of one tile or scene shares: models, settings, caches, warnings and this question's finds."""

    tile: Any  # graft_vqa.core.tiles.Tile (a scene's header-only tile for rasters of any size)
    scorer: Scorer | None  # score_maps(tile, queries) (and optionally score_image(tile, options))
    refiner: Refiner | None = None  # SamRefiner, or None for no refinement
    config: FindConfig = field(default_factory=FindConfig)  # find settings
    warnings: list[str] = field(default_factory=list)  # said once each
    sam_missing: str = SAM_MISSING  # said when refine="sam" but refiner is None (the engine says why)
    aoi: AOI | None = None  # the area of interest: instances whose centroid lies inside, areas clipped to it
    source: MapSource | None = None  # where maps and instances come from; None: the whole tile (TileMaps)
    retain_mb: float = 16.0  # maps and instances kept between questions, half each (trimmed by end_question)
    thresholds: Any = None  # ThresholdTable (graft_vqa.thresholds): per-concept find settings; None: config for all
    contrast: MapSource | None = None  # contrast probabilities on source's grid; None: built when first needed
    _maps: LRU = field(default_factory=lambda: LRU(max_bytes=MAPS_BYTES), repr=False)  # name -> scores
    _found: LRU = field(default_factory=lambda: LRU(max_bytes=FOUND_BYTES, sizeof=_instances_bytes), repr=False)
    _question: dict[tuple, list[Any]] = field(default_factory=dict, repr=False)  # this question's finds
    _evictions_seen: int = field(default=0, repr=False)  # cache evictions counted when the last question ended

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = TileMaps(self.tile, self.scorer)

    @property
    def scale(self) -> int:
        """Pixels per score-map cell (1 for whole tiles)."""
        return self.source.scale

    def warn_once(self, message: str) -> None:
        """Record ``message`` unless already recorded."""
        if message not in self.warnings:
            log.warning(message)
            self.warnings.append(message)

    # --- score maps and instances --------------------------------------------------------------
    def find_config(self, name: str) -> FindConfig:
        """The find settings of ``name``: ``config``, with its calibrated threshold when a table is set."""
        return self.config if self.thresholds is None else self.thresholds.config_for(name, self.config)

    @property
    def cells(self) -> int:
        """Cells of the map grid (pixels for a whole tile)."""
        scale = self.scale
        return -(-int(self.tile.height) // scale) * -(-int(self.tile.width) // scale)

    def _map_key(self, name: str, config: FindConfig | None) -> tuple[Any, MapSource]:
        """(cache key, source) of ``name``'s map: contrast probabilities in contrast mode, else the scores."""
        if (config or self.find_config(name)).threshold_mode != "contrast":
            return name, self.source
        if self.contrast is None:
            self.contrast = ContrastSource(self.source, load_vocabulary(self.config.contrast_vocabulary),
                                           self.config.contrast_logit_scale)
        return ("contrast", name), self.contrast

    def prefetch(self, names: list[str]) -> None:
        """Compute the maps of ``names`` not cached yet, one pass per source (a scene is read once for all)."""
        todo: dict[int, tuple[MapSource, list[tuple[Any, str]]]] = {}
        for name in dict.fromkeys(names):
            key, source = self._map_key(name, None)
            if key not in self._maps:
                todo.setdefault(id(source), (source, []))[1].append((key, name))
        for source, wanted in todo.values():
            for (key, _), scores in zip(wanted, source.score_maps([name for _, name in wanted])):
                self._maps.put(key, scores)

    def score_map(self, name: str, config: FindConfig | None = None) -> np.ndarray:
        """Scores of ``name`` on the map grid (``scale`` pixels per cell), computed once while cached: the
        contrast probabilities when ``config`` (by default ``find_config(name)``) is in contrast mode."""
        key, source = self._map_key(name, config)
        scores = self._maps.get(key)
        if scores is None:
            charge(COSTS.text_encoded, "texts encoded")
            charge(self.cells * COSTS.pixel_scored, "pixels scored")
            scores = self._maps.put(key, source.score_maps([name])[0])
        return scores

    def instances(self, box: Box, name: str) -> list[Instance]:
        """``find``'s instances of ``name`` inside ``box``; with an AOI, those whose centroid lies inside it.

        On the AOI's own window the components are taken on the whole raster first, so an object
        that crosses the AOI's edge keeps its full extent (and its true centroid) before the test.
        """
        key = (box, name)
        found = self._found.get(key)
        if found is None:
            config = self.find_config(name)
            if config.refine == "sam" and self.refiner is None and self.sam_missing not in self.warnings:
                self.warnings.append(self.sam_missing)  # logged once, where SAM was looked for; not per tile
            search = box
            if self.aoi is not None and box == self.aoi.box:
                search = (0, 0, self.tile.width, self.tile.height)
            score_map = self.score_map(name, config)
            charge(_box_cells(search, self.scale) * COSTS.pixel_segmented, "pixels segmented")
            refiner = None if self.refiner is None else _ChargedRefiner(self.refiner)
            # contrast maps are not the scorer's: a scene upsamples them rather than rescoring the query
            query = None if config.threshold_mode == "contrast" else name
            found = self.source.find(score_map, search, config, refiner, name=query)
            if self.aoi is not None:
                found = [i for i in found if self.aoi.contains_px(*i.centroid())]
            self._found.put(key, found)
        return found

    # --- areas ---------------------------------------------------------------------------------
    def row_areas(self, top: int, bottom: int) -> np.ndarray:
        """m² of one pixel of each row top..bottom (raises AreaUnavailableError without a scale)."""
        return np.asarray(self.tile.pixel_area_map(), dtype=np.float64)[top:bottom, 0]

    def area(self, box: Box, crop: np.ndarray, scale: int, clip: bool = True) -> float:
        """Ground area of a crop over ``box``; with ``clip``, only its part inside the AOI."""
        charge(crop.size * COSTS.pixel_masked, "pixels masked")
        if clip and self.aoi is not None:
            crop = crop & self.aoi.mask(box, scale)
        return area_m2(self.row_areas(box[1], box[3]), box, crop, scale)

    def union_area(self, instances: list[Instance]) -> float:
        """Ground area covered by ``instances`` (overlaps once, AOI-clipped): each group of instances
        whose boxes overlap is drawn on its own box, at full resolution unless that grid is huge.
        Without a scale it raises AreaUnavailableError whether or not anything was found."""
        self.tile.pixel_area_map()  # raises AreaUnavailableError with advice when areas are unknown
        total = 0.0
        for group in _overlap_groups(instances):
            box = group[0].box
            for inst in group[1:]:
                box = (min(box[0], inst.box[0]), min(box[1], inst.box[1]), max(box[2], inst.box[2]),
                       max(box[3], inst.box[3]))
            fine = min(i.scale for i in group)
            cells = (box[2] - box[0]) * (box[3] - box[1]) // (fine * fine)
            scale = fine if cells <= UNION_CELLS else max(i.scale for i in group)
            charge(_box_cells(box, scale) * COSTS.pixel_masked, "pixels masked")
            union = np.zeros(_grid_shape(box, scale), dtype=bool)
            for inst in group:
                union |= paste(inst, box, scale)
            total += self.area(box, union, scale)
        return total

    # --- the question's detections -------------------------------------------------------------
    def record(self, key: tuple, patches: list[Any]) -> None:
        """Remember the patches of one ``find`` (once per question and per (box, name)); they become
        :class:`Detection` objects only when asked for (polygons cost time)."""
        if key not in self._question:
            self._question[key] = patches

    def begin_question(self) -> None:
        """Start a new question: ``question_detections`` restarts empty (caches are kept)."""
        self._question = {}

    def end_question(self) -> bool:
        """The question is answered: drop its patches, and trim the caches to ``retain_mb``. True when the
        caches let anything go since the last question ended (then freed memory is worth returning)."""
        self._question = {}
        half = int(self.retain_mb * (1 << 19))
        self._maps.trim(half)
        self._found.trim(half)
        evictions = self._maps.evictions + self._found.evictions
        dropped, self._evictions_seen = evictions != self._evictions_seen, evictions
        return dropped

    @property
    def cached_bytes(self) -> int:
        """Bytes the score-map and instance caches hold now (for tests and benchmarks)."""
        return self._maps.bytes + self._found.bytes

    def question_detections(self) -> list[Detection]:
        """The detections of the ``find`` calls made since ``begin_question``."""
        return [p.detection() for patches in self._question.values() for p in patches]


class _ChargedRefiner:
    """A refiner that charges each component it is about to refine (SAM is the costliest step)."""

    def __init__(self, refiner: Refiner) -> None:
        self._refiner = refiner

    def refine(self, tile: Any, instances: list[Instance], **kwargs: Any) -> list[Instance]:
        charge(len(instances) * COSTS.instance_refined, "instances refined")
        return self._refiner.refine(tile, instances, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._refiner, name)


def _box_cells(box: Box, scale: int) -> int:
    return max(0, -(-(box[2] - box[0]) // scale)) * max(0, -(-(box[3] - box[1]) // scale))


def _grid_shape(box: Box, scale: int) -> tuple[int, int]:
    return (-(-(box[3] - box[1]) // scale), -(-(box[2] - box[0]) // scale))


def _overlap_groups(instances: list[Instance]) -> list[list[Instance]]:
    """Instances grouped so that boxes of different groups never overlap (union-find on box overlaps,
    found with a sweep over the boxes' left edges)."""
    order = sorted(range(len(instances)), key=lambda i: instances[i].box[0])
    parent = list(range(len(instances)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    active: list[int] = []
    for i in order:
        left, top, right, bottom = instances[i].box
        active = [j for j in active if instances[j].box[2] > left]
        for j in active:
            b = instances[j].box
            if b[1] < bottom and top < b[3]:
                parent[root(i)] = root(j)
        active.append(i)
    groups: dict[int, list[Instance]] = {}
    for i in range(len(instances)):
        groups.setdefault(root(i), []).append(instances[i])
    return list(groups.values())
