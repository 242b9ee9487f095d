"""Draw an answer's detections on the tile: translucent masks, outlines and a legend per name.

The overlay is what a person checks an answer against, so every name the program queried gets a
legend entry (with its instance count, zero included) and its own colour.
"""
from __future__ import annotations

import ast
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from graft_vqa.answer import Detection

# distinct, colour-blind friendly colours (Okabe-Ito, then Tol's bright), as RGB
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
    (213, 94, 0), (204, 121, 167), (238, 102, 119), (34, 136, 51), (170, 51, 119),
)
MIN_DISPLAY_SIDE = 512  # small tiles are enlarged (nearest neighbour) to at least this long side
FILL_ALPHA = 0.35  # opacity of the mask fill
LEGEND_ROW_FRACTION = 0.045  # height of one legend row as a fraction of the image width (readable when shrunk)


def colour_for(index: int) -> tuple[int, int, int]:
    """The legend colour of the ``index``-th name (cycles through :data:`PALETTE`)."""
    return PALETTE[index % len(PALETTE)]


def queried_names(program: str) -> list[str]:
    """Names passed as string literals to ``find(...)`` in ``program``, in order, without repeats.

    Returns ``[]`` for an empty or unparseable program.
    """
    try:
        tree = ast.parse(program or "")
    except SyntaxError:
        return []
    names: dict[str, None] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "find"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names[node.args[0].value] = None
    return sorted(names, key=lambda n: _first_position(program, n))  # ast.walk is breadth-first


def _first_position(program: str, name: str) -> int:
    for quote in ('"', "'"):
        pos = program.find(f"{quote}{name}{quote}")
        if pos >= 0:
            return pos
    return len(program)


def legend_names(detections: Sequence[Detection], program: str = "") -> list[str]:
    """Names for the legend: those the program queried, then any other detection names."""
    names = dict.fromkeys(queried_names(program))
    for d in detections:
        names.setdefault(d.name, None)
    return list(names)


Scale = tuple[float, float]  # display pixels per detection pixel, (columns, rows)


def _display_scale(height: int, width: int) -> int:
    return max(1, math.ceil(MIN_DISPLAY_SIDE / max(height, width, 1)))


def _box(detection: Detection, scale: Scale) -> list[float]:
    """The detection's box at display scale, at least one display pixel wide and high."""
    (fx, fy), (left, top, right, bottom) = scale, detection.box
    return [left * fx, top * fy, max(left * fx, right * fx - 1), max(top * fy, bottom * fy - 1)]


def _points(ring: Sequence[tuple[float, float]], scale: Scale) -> list[tuple[float, float]]:
    return [(c * scale[0], r * scale[1]) for c, r in ring]


def _detection_mask(detection: Detection, size: tuple[int, int], scale: Scale) -> Image.Image:
    """An 8-bit mask (255 inside) of one detection at display scale; holes are cut out."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    polygons = _polygons(detection)
    if not polygons:
        draw.rectangle(_box(detection, scale), fill=255)
        return mask
    for polygon in polygons:  # each part: fill its exterior, then cut its holes
        part = Image.new("L", size, 0)
        part_draw = ImageDraw.Draw(part)
        for i, ring in enumerate(polygon):
            part_draw.polygon(_points(ring, scale), fill=255 if i == 0 else 0)
        mask.paste(255, mask=part)
    return mask


def _polygons(detection: Detection) -> list[list[list[tuple[float, float]]]]:
    """The detection's polygons ([exterior, *holes]) whose exterior is a real ring."""
    return [[ring for ring in poly if len(ring) >= 3] for poly in detection.polygons_px
            if poly and len(poly[0]) >= 3]


def _draw_detections(base: Image.Image, detections: Sequence[Detection], colours: dict[str, tuple[int, int, int]],
                     scale: Scale) -> Image.Image:
    """Composite translucent fills, then outlines, of every detection onto ``base`` (RGB)."""
    out = base.convert("RGBA")
    line = max(2, round(max(scale)))
    masks: dict[str, Image.Image] = {}  # one mask per name: the union of its detections
    for d in detections:
        mask = _detection_mask(d, out.size, scale)
        if d.name in masks:
            masks[d.name].paste(255, mask=mask)
        else:
            masks[d.name] = mask
    for name, mask in masks.items():  # one composite per name, not per detection
        fill = Image.new("RGBA", out.size, colours[name] + (int(255 * FILL_ALPHA),))
        out = Image.composite(Image.alpha_composite(out, fill), out, mask)
    draw = ImageDraw.Draw(out)
    for d in detections:
        colour = colours[d.name]
        rings = [ring for polygon in _polygons(d) for ring in polygon]
        if rings:
            for ring in rings:
                points = _points(ring, scale)
                draw.line(points + [points[0]], fill=colour + (255,), width=line)
        else:
            draw.rectangle(_box(d, scale), outline=colour + (255,), width=line)
    return out.convert("RGB")


def _legend(width: int, names: Sequence[str], counts: dict[str, int],
            colours: dict[str, tuple[int, int, int]]) -> Image.Image:
    """A white strip with one row per name: colour swatch, name and instance count."""
    row = max(20, round(width * LEGEND_ROW_FRACTION))
    pad, swatch = row // 4, row * 2 // 3
    strip = Image.new("RGB", (width, max(1, len(names)) * row + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=swatch)
    if not names:
        draw.text((pad, pad), "no objects queried", fill=(60, 60, 60), font=font)
        return strip
    for i, name in enumerate(names):
        y = pad + i * row
        draw.rectangle([pad, y + (row - swatch) // 2, pad + swatch, y + (row + swatch) // 2],
                       fill=colours[name], outline=(40, 40, 40))
        n = counts.get(name, 0)
        draw.text((2 * pad + swatch, y + (row - swatch) // 2), f"{name}: {n} instance{'s' if n != 1 else ''}",
                  fill=(20, 20, 20), font=font)
    return strip


def render_overlay(rgb: np.ndarray, detections: Sequence[Detection], program: str = "",
                   *, legend: bool = True, source_size: tuple[int, int] | None = None) -> np.ndarray:
    """The tile with its detections drawn on it, and a legend strip below.

    Args:
        rgb: the tile as ``H×W×3`` uint8 (``Tile.rgb()``), or a decimated preview of a larger raster.
        detections: the answer's detections (``polygons_px`` in tile pixels, else ``box``).
        program: the program source; names it passes to ``find`` get legend rows even without hits.
        legend: add the legend strip below the image.
        source_size: ``(height, width)`` of the raster whose pixels the detections are given in, when
            ``rgb`` is a preview of it (a scene); ``None``: ``rgb``'s own size.

    Returns:
        ``H'×W'×3`` uint8, the tile enlarged by an integer factor when smaller than
        :data:`MIN_DISPLAY_SIDE`, plus the legend rows.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"render_overlay needs an H×W×3 uint8 image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    enlarge = _display_scale(height, width)
    base = Image.fromarray(rgb)
    if enlarge > 1:
        base = base.resize((width * enlarge, height * enlarge), Image.NEAREST)
    source_height, source_width = source_size or (height, width)
    scale = (base.width / source_width, base.height / source_height)
    names = legend_names(detections, program)
    colours = {name: colour_for(i) for i, name in enumerate(names)}
    image = _draw_detections(base, detections, colours, scale)
    if legend:
        counts: dict[str, int] = {}
        for d in detections:
            counts[d.name] = counts.get(d.name, 0) + 1
        strip = _legend(image.width, names, counts, colours)
        canvas = Image.new("RGB", (image.width, image.height + strip.height), (255, 255, 255))
        canvas.paste(image, (0, 0))
        canvas.paste(strip, (0, image.height))
        image = canvas
    return np.asarray(image)
