"""Output files: checked before any work, then written whole or not at all.

:func:`check_output_path` is called by every interface before it computes anything, so a bad
``--vector``/``--geojson``/``--out`` costs a one-line error and no work. :func:`atomic_output`
writes through a hidden temporary folder next to the target and renames the result into place:
an error or Ctrl-C leaves no half file, and an existing file is replaced in one rename (a
Shapefile's parts are renamed one by one, the ``.shp`` last, so a reader never sees a ``.shp``
without its ``.dbf``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from graft_vqa.core.errors import OutputPathError

SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")  # written beside a .shp


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def check_output_path(path: str | os.PathLike, suffixes: Iterable[str], what: str = "output") -> Path:
    """``path`` as a :class:`Path` once it is known to be writable: its extension is one of
    ``suffixes`` (lower case, with the dot), its folder exists and accepts a new file (probed by
    creating and removing one), and it is not itself a folder.

    Raises:
        OutputPathError: with a one-line message naming ``what`` (e.g. ``"--vector"``) and the fix.
    """
    target = Path(path).expanduser()
    allowed = tuple(suffixes)
    if _suffix(target) not in allowed:
        shown = ", ".join(allowed)
        raise OutputPathError(f"{what} {target}: unknown extension {target.suffix or '(none)'!r}; "
                              f"use one of {shown}")
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is a folder; give a file name inside it")
    folder = target.parent
    if not folder.exists():
        raise OutputPathError(f"{what} {target}: the folder {folder} does not exist; create it first "
                              "or choose another path")
    if not folder.is_dir():
        raise OutputPathError(f"{what} {target}: {folder} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".graft-vqa-probe-")
    except OSError as exc:
        raise OutputPathError(f"{what} {target}: cannot write in {folder} ({exc.strerror or exc}); "
                              "choose a folder you can write to") from None
    os.close(fd)
    os.unlink(probe)
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s name inside a hidden folder next to it; write there.

    On success every file written in that folder replaces its namesake beside ``path`` (the file
    named ``path`` last) and, for a Shapefile, parts of an older Shapefile that the new one lacks
    are removed. On any exception (KeyboardInterrupt included) the temporary folder is removed and
    ``path`` is left as it was.
    """
    target = Path(path)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield staging / target.name
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    written = sorted(p for p in staging.iterdir() if p.is_file())
    main = staging / target.name
    if not main.exists():
        raise OutputPathError(f"nothing was written to {target}")
    if _suffix(target) == ".shp":
        made = {_suffix(p) for p in written}
        for part in SHAPEFILE_PARTS:
            old = target.with_suffix(part)
            if part not in made and old.exists():
                old.unlink()
    for part in written:
        if part != main:
            os.replace(part, target.parent / part.name)
    os.replace(main, target)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    target = Path(path)
    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
