"""One-paragraph descriptions of a tile and of an answer, as markdown for the app."""
from __future__ import annotations

from typing import Any

from graft_vqa.answer import Answer
from graft_vqa.interfaces.app.messages import escape_markdown


def _crs_text(tile: Any) -> str:
    crs = getattr(tile, "crs", None)
    if crs is None:
        return "none (not georeferenced)"
    try:
        epsg = crs.to_epsg()
    except Exception:  # noqa: BLE001 - a CRS without an EPSG code
        epsg = None
    return f"EPSG:{epsg}" if epsg else str(crs.to_string())[:80]


def _gsd_text(tile: Any) -> str:
    gsd = getattr(tile, "gsd_m", None)
    if gsd is None:
        return "unknown (set it in Settings to get areas in m²)"
    approx = "≈ " if getattr(tile, "is_geographic", False) else ""
    return f"{approx}{gsd:.3g} m/px"


def tile_summary(tile: Any, name: str = "", *, scene: bool = False, preview: tuple[int, int] | None = None) -> str:
    """Markdown with the tile's file name, size, bands, CRS and ground sample distance; for a ``scene`` (a
    raster above ``scene_pixels``) that it is answered window by window, and the ``preview``'s (height, width)
    when it was read decimated."""
    title = f"**{name}** · " if name else ""
    notes = []
    if tile.count > 3:
        notes.append(f"RGB from {tile.count} bands")
    if str(tile.dtype) != "uint8":
        notes.append("stretched 2–98 %")
    stretched = f" ({', '.join(notes)})" if notes else ""
    kind = []
    if scene:
        kind.append(f"scene of {tile.megapixels:.0f} megapixels, answered window by window")
    if preview is not None and tuple(preview) != (tile.height, tile.width):
        kind.append(f"preview {preview[1]} × {preview[0]} px")
    size = f"{tile.width} × {tile.height} px" + (f" ({'; '.join(kind)})" if kind else "")
    return (f"{title}{size}, {tile.count} band{'s' if tile.count != 1 else ''} "
            f"{tile.dtype}{stretched} · CRS: {_crs_text(tile)} · GSD: {_gsd_text(tile)}")


STAGES = {"plan_s": "planning", "models_s": "loading models", "tile_s": "encoding the tile", "load_s": "load",
          "run_s": "running", "total_s": "total"}  # timing keys as the app names its steps
KINDS = {"bool": "yes/no", "count": "count", "area_m2": "area", "percent": "share of the image", "text": "text"}
# on every answer that random weights gave, before the answer itself (red, so it cannot be missed)
UNTRAINED_BADGE = ('<span class="untrained-badge" style="background:#b91c1c;color:#fff;font-weight:700;'
                   'padding:1px 8px;border-radius:4px">⚠ UNTRAINED</span> random weights: this answer is NOT '
                   'meaningful')


def timings_text(timings: dict[str, float]) -> str:
    """``"loading models 7.90 s · planning 0.00 s · running 0.12 s · total 8.02 s"`` from an answer's timings."""
    parts = [f"{STAGES.get(key, key.removesuffix('_s'))} {value:.2f} s" for key, value in timings.items()]
    return " · ".join(parts) if parts else "no timings"


def answer_text(answer: Answer) -> str:
    """The answer as a short markdown message: an UNTRAINED badge when random weights answered, then
    the value, its kind, the detections and the timings."""
    kind = KINDS.get(answer.kind, answer.kind)
    lines = [UNTRAINED_BADGE] if answer.untrained else []
    lines += [f"**{escape_markdown(answer.answer)}** ({kind}; {len(answer.detections)} detection"
              f"{'s' if len(answer.detections) != 1 else ''})",
              f"Timings: {timings_text(answer.timings)}"]
    return "\n\n".join(lines)


def warnings_title(warnings: list[str], width: int = 90) -> str:
    """A one-line title for an answer's warnings: their number and the start of the first."""
    first = warnings[0] if len(warnings[0]) <= width else warnings[0][:width].rsplit(" ", 1)[0] + " …"
    return f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}: {first}"
