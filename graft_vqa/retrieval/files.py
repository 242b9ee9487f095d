"""The files of a collection: paths from globs, folders and list files; file keys; acquisition dates."""
from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

from graft_vqa.core.errors import TileNotFoundError, UnreadableTileError
from graft_vqa.core.tiles.sources import FileSource

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".png", ".jpg", ".jpeg", ".jp2", ".img")  # a folder's rasters
LIST_SUFFIXES = (".txt", ".lst", ".list")  # a text file of paths, one a line
DATE_TAGS = ("ACQUISITIONDATETIME", "DATE_ACQUIRED", "ACQUISITION_DATE", "TIFFTAG_DATETIME")  # first found wins
_DATE = re.compile(r"^(\d{4})[:\-/](\d{2})[:\-/](\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2}))?")


def expand_paths(specs: Any) -> list[Path]:
    """The raster files ``specs`` names, absolute, each once, in order: a glob pattern (sorted; ``**``
    recurses), a folder (its rasters, sorted, not recursive), a text file of paths (one a line, ``#``
    comments, relative to the file's folder), a raster path, or a list of any of these.

    Raises:
        TileNotFoundError: a path that does not exist, a pattern that matches nothing, a folder without
            rasters, or nothing at all.
    """
    items = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    paths = [p for item in items for p in _expand(os.fspath(item))]
    if not paths:
        raise TileNotFoundError("the collection is empty: give raster files, a folder, a glob such as "
                                "'tiles/**/*.tif' or a text file of paths")
    return list(dict.fromkeys(paths))


def _expand(text: str) -> list[Path]:
    if glob.has_magic(text):
        found = sorted(Path(p).resolve() for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file())
        if not found:
            raise TileNotFoundError(f"no file matches {text!r}: check the pattern (quote it, so the shell "
                                    "passes it to graft-vqa as it is)")
        return found
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p.resolve() for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if not found:
            raise TileNotFoundError(f"the folder {path} holds no rasters ({', '.join(RASTER_SUFFIXES)}); give "
                                    "another folder or a glob such as 'tiles/**/*.tif'")
        return found
    if not path.exists():
        raise TileNotFoundError(f"no file at {path}: check the path (cwd is {Path.cwd()})")
    if path.suffix.lower() in LIST_SUFFIXES:
        return [p for line in _list_lines(path) for p in _expand(_relative(line, path.parent))]
    return [path.resolve()]


def _list_lines(path: Path) -> Iterable[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _relative(line: str, folder: Path) -> str:
    p = Path(line).expanduser()
    return str(p if p.is_absolute() else folder / p)


def file_key(path: Path) -> str:
    """The file's identity for incremental indexing: resolved path, modification time and size (as
    :attr:`graft_vqa.core.tiles.Tile.key` has it), hashed."""
    return FileSource(path).key("index")


def acquisition_date(path: Path) -> str | None:
    """The acquisition date an image file records (GDAL metadata such as ``ACQUISITIONDATETIME`` or the
    TIFF ``DateTime`` tag) as ISO 8601, or None."""
    try:
        with FileSource(path).open() as ds:
            tags = {**ds.tags(), **ds.tags(ns="IMAGERY")}
    except UnreadableTileError:
        return None
    for name in DATE_TAGS:
        match = _DATE.match(str(tags.get(name, "")).strip())
        if match:
            y, mo, d, h, mi, s = match.groups()
            return f"{y}-{mo}-{d}" + (f"T{h}:{mi}:{s}" if h else "")
    return None
