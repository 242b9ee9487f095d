"""The files of a collection: their paths (as ``graft_vqa.collection`` lists them), keys and acquisition dates."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from graft_vqa.collection import expand_images
from graft_vqa.core.errors import UnreadableTileError
from graft_vqa.core.tiles.sources import FileSource

log = logging.getLogger(__name__)

DATE_TAGS = ("ACQUISITIONDATETIME", "DATE_ACQUIRED", "ACQUISITION_DATE", "TIFFTAG_DATETIME")  # first found wins
_DATE = re.compile(r"^(\d{4})[:\-/](\d{2})[:\-/](\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2}))?")


def expand_paths(specs: Any) -> list[Path]:
    """The files of a collection as :func:`graft_vqa.collection.expand_images` lists them (a glob, a folder, a
    text file of paths, a path, or a list of these), absolute and each once, in order. Listed files need
    not exist: indexing reports a missing one and goes on.

    Raises:
        TileNotFoundError: a pattern that matches nothing, a folder without rasters, an empty list.
    """
    return list(dict.fromkeys(Path(p).expanduser().resolve() for p in expand_images(specs)))


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
