"""Zero-shot segmentation with GRAFT scores: a mask, its outline and area, GeoTIFF and vector outputs;
and an mIoU evaluator over image/mask folders.

Three recipes:

- ``method="find"`` (the default): the engine's ``find`` pipeline, so the mask is exactly what
  ``graft_vqa.ask`` measures: the score map cut at the engine's threshold (or the calibrated one),
  connected components, SAM refinement of each, duplicates merged; the mask is the union of the
  instances and its area the answer to "What is the area covered by <text>?".
- ``method="sam-point"`` (the GRAFT paper's): the centre of the highest-scoring ``patch_size`` px
  patch is a foreground point prompt for SAM; of SAM's three masks the one with the highest
  predicted IoU is kept.
- ``method="threshold"``: the score map thresholded as ``find`` does (absolute, relative, or contrast
  probabilities against the background vocabulary), no SAM.

Models are built by an :class:`~graft_vqa.engine.Engine` (given, or made from the scorer, refiner and
options), so a missing SAM checkpoint means components without refinement plus one warning, and a
raster above ``scene_pixels`` is segmented through the engine's scene plan (``find`` only); its mask
is written block by block from the instances' crops, never held whole.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from shapely.geometry import mapping, shape
from tqdm.auto import tqdm

from graft_vqa.answer import Answer, Detection
from graft_vqa.config import EngineConfig, FindConfig
from graft_vqa.core.errors import DatasetNotFoundError, GraftVQAError
from graft_vqa.core.rasters import MASK_BLOCK, MASK_NODATA, write_mask  # noqa: F401 - MASK_NODATA re-exported
from graft_vqa.engine import Engine
from graft_vqa.perception.components import threshold_value
from graft_vqa.perception.contrast import contrast_scorer
from graft_vqa.perception.geometry import mask_polygon, polygon_rings
from graft_vqa.perception.instances import Instance, mask_box, paste
from graft_vqa.perception.scorer import resize_maps

log = logging.getLogger(__name__)

Method = Literal["find", "sam-point", "threshold"]
METHODS = ("find", "sam-point", "threshold")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass
class SegmentResult:
    """One text query segmented on one image (a whole tile, or a scene of any size)."""

    mask: np.ndarray | None  # bool (H, W); None for a scene too large to hold (use mask_window)
    polygons: list[Any]  # shapely Polygons in the tile's CRS (pixel coordinates when not georeferenced)
    score_map: np.ndarray  # float32 scores of the query (H, W; a scene's cell grid for scenes)
    method: str  # "find", "sam-point" or "threshold"
    point: tuple[int, int] | None = None  # (col, row) of the SAM point prompt
    area_m2: float | None = None  # mask area when the tile has georeferencing or gsd_m
    text: str = ""  # the query
    tile: Any = field(default=None, repr=False)  # the graft_vqa.core.tiles.Tile segmented
    detections: list[Detection] = field(default_factory=list)  # find's instances (one for the other methods)
    warnings: list[str] = field(default_factory=list)  # untrained weights, SAM missing, ...
    instances: list[Instance] = field(default_factory=list, repr=False)  # find's instances (mask crops)
    aoi: Any = field(default=None, repr=False)  # the area of interest the mask is clipped to, if any

    def mask_window(self, window: tuple[int, int, int, int]) -> np.ndarray:
        """The bool mask over ``(row_off, col_off, height, width)``: the union of the instances (clipped to
        the AOI), computed from their crops, so any window of a scene of any size."""
        row, col, height, width = window
        if self.mask is not None:
            return self.mask[row:row + height, col:col + width]
        box = (col, row, col + width, row + height)
        out = np.zeros((height, width), dtype=bool)
        for inst in self.instances:
            left, top, right, bottom = inst.box
            if left < box[2] and right > box[0] and top < box[3] and bottom > box[1]:
                out |= paste(inst, box)
        if self.aoi is not None:
            out &= self.aoi.mask(box)
        return out

    def pixels(self) -> int:
        """Pixels in the mask."""
        if self.mask is not None:
            return int(self.mask.sum())
        return sum(int(self.mask_window(w).sum()) for w in _blocks(self.tile.height, self.tile.width))

    def answer(self) -> Answer:
        """The result as the :class:`Answer` to "What is the area covered by <text>?" (its detections
        are the instances), e.g. for ``Answer.to_geojson``; pixels counted without georeferencing."""
        crs = self.tile.crs.to_string() if self.tile is not None and self.tile.crs is not None else None
        if self.area_m2 is None:
            pixels = self.pixels()
            return Answer(question=self.text, answer=f"{pixels} px", value=pixels, kind="count",
                          detections=self.detections, warnings=self.warnings, crs=crs)
        return Answer(question=self.text, answer=f"{round(self.area_m2)} m2", value=float(self.area_m2),
                      kind="area_m2", detections=self.detections, warnings=self.warnings, crs=crs)

    def to_vector(self, path: str | Path, crs: Any = None) -> Path:
        """Write the instances as vectors (:meth:`graft_vqa.answer.Answer.to_file`: GeoPackage, GeoJSON,
        FlatGeobuf or Shapefile by extension, with ``label``, ``score``, ``area_m2``, ``perimeter_m``,
        ``refined``), atomically."""
        return self.answer().to_file(path, crs=crs)

    def to_geotiff(self, path: str | Path) -> Path:
        """Write the mask as a single-band GeoTIFF on the input's grid, CRS and nodata, block by block and
        atomically (:func:`graft_vqa.core.rasters.write_mask`: 1 inside, 0 outside, nodata on invalid pixels)."""
        if self.tile is None:
            raise GraftVQAError("this result has no tile to take the grid from; segment() sets it")
        tags = {"QUERY": self.text, "METHOD": self.method, "VALUES": "1: query found, 0: not found"}
        if self.area_m2 is not None:
            tags["AREA_M2"] = repr(float(self.area_m2))
        return write_mask(path, self.tile, self.mask_window, tags=tags, description=f"mask: {self.text}")


def _blocks(height: int, width: int, side: int = MASK_BLOCK) -> list[tuple[int, int, int, int]]:
    return [(r, c, min(side, height - r), min(side, width - c)) for r in range(0, height, side)
            for c in range(0, width, side)]


def _mask_detection(tile: Any, mask: np.ndarray, text: str, score: np.ndarray, refined: bool) -> list[Detection]:
    """The whole mask as one detection (the sam-point and threshold recipes)."""
    if not mask.any():
        return []
    outline = mask_polygon(mask)
    geometry = mapping(mask_polygon(mask, tile.transform)) if tile.crs is not None else None
    return [Detection(name=text, score=float(score[mask].max()), box=mask_box(mask),
                      area_m2=float(tile.area_m2(mask)) if tile.has_area else None,
                      polygons_px=polygon_rings(outline), geometry=geometry, refined=refined)]


def _point_prompt(score: np.ndarray, valid: np.ndarray, patch_size: int) -> tuple[int, int]:
    """(col, row) centre of the ``patch_size`` cell holding the best valid score."""
    row, col = np.unravel_index(int(np.argmax(np.where(valid, score, -np.inf))), score.shape)
    h, w = score.shape
    half = patch_size // 2
    return (min((col // patch_size) * patch_size + half, w - 1),
            min((row // patch_size) * patch_size + half, h - 1))


def segment_tile(tile: Any, score: np.ndarray, *, refiner: Any = None, method: Method = "sam-point",
                 config: FindConfig | None = None, patch_size: int = 16) -> SegmentResult:
    """Segment one (H, W) score map already computed on ``tile`` (see :func:`segment`)."""
    config = config or FindConfig()
    valid = np.asarray(tile.valid_mask(), dtype=bool)
    point = None
    if method == "threshold":
        mask = (score >= threshold_value(score, valid, config)) & valid
    elif method == "sam-point":
        if refiner is None:
            raise GraftVQAError("method='sam-point' needs a SAM refiner: pass "
                                "refiner=SamRefiner(build_sam(...)), or use method='threshold'")
        point = _point_prompt(score, valid, patch_size)
        out = refiner.predict(tile, np.array([point]))
        mask = out.masks[0, int(np.argmax(out.iou_predictions[0]))] & valid
    else:
        raise GraftVQAError(f"segment_tile cannot run method {method!r}: use 'sam-point' or 'threshold' "
                            "(method='find' runs through segment())")
    geom = mask_polygon(mask, tile.transform)
    polygons = [g for g in getattr(geom, "geoms", [geom]) if not g.is_empty]
    area = float(tile.area_m2(mask)) if tile.has_area else None
    return SegmentResult(mask, polygons, score, method, point, area)


def segment(image: Any, text: str, *, scorer: Any = None, refiner: Any = None, method: Method = "find",
            config: EngineConfig | FindConfig | None = None, patch_size: int = 16, gsd_m: float | None = None,
            engine: Any = None, aoi: Any = None, aoi_crs: Any = None, **options: Any) -> SegmentResult:
    """Zero-shot segmentation of ``text`` in ``image`` (path, array, PIL image or Tile).

    Args:
        scorer, refiner: a :class:`~graft_vqa.perception.protocols.Scorer` and a SAM refiner; ``None`` builds
            the defaults from the weights (as :class:`~graft_vqa.engine.Engine` does).
        method: ``"find"`` (the engine's pipeline; the mask's area is the answer's), ``"sam-point"`` or
            ``"threshold"`` (see the module's documentation).
        config: an :class:`EngineConfig` (models and find settings) or a :class:`FindConfig`.
        engine: an :class:`~graft_vqa.engine.Engine` to use as it is (its models and settings; ``scorer``,
            ``refiner``, ``config`` and ``options`` must then be left out).
        aoi, aoi_crs: an area of interest (``find`` only), as :meth:`Engine.image_patch` takes it: the mask
            and its area are clipped to it, as the answer's are.
        **options: ``EngineConfig`` or ``FindConfig`` fields (``allow_untrained=True``, ``threshold=0.1``).

    Write the result with :meth:`SegmentResult.to_geotiff` and ``result.answer().to_geojson()``.
    """
    from graft_vqa.core.tiles import load_tile

    if method not in METHODS:
        raise GraftVQAError(f"unknown segmentation method {method!r}: use one of {', '.join(METHODS)}")
    engine = _engine(engine, scorer, refiner, config, gsd_m, options)
    tile = load_tile(image, gsd_m=engine.config.gsd_m)
    if method == "find":
        return _segment_find(engine, tile, str(text), aoi, aoi_crs)
    if aoi is not None:
        raise GraftVQAError(f"an area of interest works with method='find' only, not {method!r}")
    scorer = _scorer_for(engine.scorer, method, engine.config.find)
    score = resize_maps(scorer.score_maps(tile, [text]), (tile.height, tile.width))[0]
    result = segment_tile(tile, score, refiner=engine.refiner if method == "sam-point" else None, method=method,
                          config=engine.config.find, patch_size=patch_size)
    result.text, result.tile, result.warnings = str(text), tile, engine.warnings
    result.detections = _mask_detection(tile, result.mask, str(text), score, refined=method == "sam-point")
    return result


def _engine(engine: Any, scorer: Any, refiner: Any, config: Any, gsd_m: float | None,
            options: dict[str, Any]) -> Any:
    """The engine to segment with: the given one, or one built from the parts and options."""
    if engine is not None:
        if scorer is not None or refiner is not None or config is not None or options or gsd_m is not None:
            raise GraftVQAError("segment(engine=...) uses that engine's models and settings: leave out scorer, "
                                "refiner, config, gsd_m and other options (or leave out engine)")
        return engine
    if isinstance(config, FindConfig):
        config = EngineConfig(find=config)
    if gsd_m is not None:
        options = {**options, "gsd_m": gsd_m}
    return Engine(scorer=scorer, refiner=refiner, config=config, **options)


def _segment_find(engine: Any, tile: Any, text: str, aoi: Any, aoi_crs: Any) -> SegmentResult:
    """The union of ``find``'s instances of ``text``, as the engine finds them (a scene window by window)."""
    root = engine.image_patch(tile, aoi, aoi_crs)
    patches = root.find(text)
    area = float(root.coverage_m2(text)) if tile.has_area else None
    detections = [p.detection() for p in patches]
    warnings = list(dict.fromkeys(engine.warnings + list(root.context.warnings)))
    result = SegmentResult(None, [], root.context.score_map(text), "find", None, area, text, tile, detections,
                           warnings, [p.instance for p in patches], root.context.aoi)
    if tile.height * tile.width <= tile.max_pixels:
        result.mask = result.mask_window((0, 0, tile.height, tile.width))
    result.polygons = [shape(d.geometry) if tile.crs is not None and d.geometry else shape(d.geometry_px())
                       for d in detections]
    return result


def _scorer_for(scorer: Any, method: str, config: FindConfig | None) -> Any:
    """``scorer``, or its contrast probabilities when thresholding in contrast mode."""
    if method == "threshold" and config is not None and config.threshold_mode == "contrast":
        return contrast_scorer(scorer, config)
    return scorer


@dataclass
class MiouResult:
    """Per-class IoU accumulated over a data set (intersections and unions summed over images)."""

    per_class: dict[str, float]  # IoU per class with a non-empty union
    miou: float  # mean of ``per_class``
    images: int  # image/mask pairs evaluated
    intersections: dict[str, int] = field(default_factory=dict)  # summed pixels per class
    unions: dict[str, int] = field(default_factory=dict)  # summed pixels per class


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    images, masks = folder / "images", folder / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DatasetNotFoundError(f"{folder} must hold images/ and masks/ (masks/<image stem>.png or .tif "
                                   "with one class index per pixel)")
    pairs = []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        mask = next((masks / f"{img.stem}{s}" for s in (".png", ".tif", ".tiff")
                     if (masks / f"{img.stem}{s}").is_file()), None)
        if mask is None:
            raise DatasetNotFoundError(f"no mask for {img.name}: expected {masks / (img.stem + '.png')}")
        pairs.append((img, mask))
    if not pairs:
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")
    return pairs


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".png":
        from PIL import Image

        return np.asarray(Image.open(path))
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def evaluate_miou(folder: str | Path, classes: list[str], *, scorer: Any, refiner: Any = None,
                  method: Method = "threshold", config: FindConfig | None = None,
                  ignore_index: int = 255, patch_size: int = 16) -> MiouResult:
    """mIoU of zero-shot segmentation over ``folder/images/*`` and ``folder/masks/<stem>.png|tif``.

    Mask pixel value ``i`` is ``classes[i]``; ``ignore_index`` pixels are left out. Every class is
    segmented on every image (a false positive on an image without that class counts against it).
    """
    from graft_vqa.core.tiles import load_tile

    inter = dict.fromkeys(classes, 0)
    union = dict.fromkeys(classes, 0)
    pairs = _pairs(Path(folder))
    scorer = _scorer_for(scorer, method, config)
    for img_path, mask_path in tqdm(pairs, desc="mIoU", unit="image", disable=len(pairs) < 10):
        tile = load_tile(img_path)
        labels = _read_labels(mask_path)
        if labels.shape != (tile.height, tile.width):
            raise DatasetNotFoundError(f"{mask_path.name} is {labels.shape}, its image is "
                                       f"{(tile.height, tile.width)}: masks must match their images")
        keep = labels != ignore_index
        maps = resize_maps(scorer.score_maps(tile, list(classes)), (tile.height, tile.width))
        for i, name in enumerate(classes):
            pred = segment_tile(tile, maps[i], refiner=refiner, method=method, config=config,
                                patch_size=patch_size).mask
            gt = labels == i
            inter[name] += int((pred & gt & keep).sum())
            union[name] += int(((pred | gt) & keep).sum())
    per_class = {c: inter[c] / union[c] for c in classes if union[c] > 0}
    miou = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return MiouResult(per_class, miou, len(pairs), inter, union)
