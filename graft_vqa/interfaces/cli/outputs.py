"""Small helpers the search, classify and segment commands share: atomic text files and bounding boxes."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from graft_vqa.core.errors import OutputPathError


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> Path:
    """``path`` once its extension is one of ``suffixes`` and its folder exists (checked before any work).

    Raises:
        OutputPathError: a one-line message naming ``what``.
    """
    target = Path(path).expanduser()
    if target.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} {target}: unknown extension {target.suffix or '(none)'!r}; use one of "
                              f"{', '.join(suffixes)}")
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is a folder; give a file name inside it")
    if not target.parent.is_dir():
        raise OutputPathError(f"{what} {target}: the folder {target.parent} does not exist; create it first")
    return target


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and one rename (never half written)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def bbox(text: str) -> tuple[float, float, float, float]:
    """argparse type: ``MINX,MINY,MAXX,MAXY``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected MINX,MINY,MAXX,MAXY (four numbers), got {text!r}")
    return values  # type: ignore[return-value]
