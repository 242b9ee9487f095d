"""The official ``graft-data-collection`` pair layout, read and written.

Under a root folder::

    split_m2o/train.csv   rows  sat_relpath, ground_relpath   (one row per pair, <= 25 per satellite)
    split_m2o/test.csv    same
    pixel_offset.csv      rows  sat, ground, dx, dy

``dx, dy`` is the offset of the ground photo from the satellite image centre in pixels, so its
pixel position is ``(dx + width / 2, dy + height / 2)``. Paths are relative to the root.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from graft_vqa.core.errors import DatasetNotFoundError

log = logging.getLogger(__name__)
SPLIT_DIR = "split_m2o"
OFFSETS = "pixel_offset.csv"


@dataclass
class SatRecord:
    """One satellite image and its ground photos (the multi-positive unit of GRAFT)."""

    sat: str  # satellite image path relative to the root
    grounds: list[str] = field(default_factory=list)  # ground photo paths relative to the root
    offsets: list[tuple[float, float]] = field(default_factory=list)  # (dx, dy) from the centre, px


def _rows(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """CSV rows with ``columns`` (header optional: a first row naming the columns is skipped)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows and [c.strip() for c in rows[0][: len(columns)]] == list(columns):
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < len(columns)]
    if bad:
        raise DatasetNotFoundError(f"{path}: row {bad[0] + 1} has fewer than the columns {columns}")
    return rows


def read_official(root: str | Path, split: str = "train") -> list[SatRecord]:
    """Read ``split`` (``train``/``test``) of the official layout under ``root``, grouped by satellite.

    Pairs without a row in ``pixel_offset.csv`` get offset (0, 0), the image centre, and a warning.
    """
    root = Path(root)
    split_csv = root / SPLIT_DIR / f"{split}.csv"
    if not split_csv.is_file():
        raise DatasetNotFoundError(
            f"{split_csv} not found: pass the root of a graft-data-collection layout "
            f"(with {SPLIT_DIR}/{{train,test}}.csv and {OFFSETS}), or build one with build_pairs()")
    offsets: dict[tuple[str, str], tuple[float, float]] = {}
    if (root / OFFSETS).is_file():
        for r in _rows(root / OFFSETS, ("sat", "ground", "dx", "dy")):
            offsets[(r[0].strip(), r[1].strip())] = (float(r[2]), float(r[3]))
    records: dict[str, SatRecord] = {}
    missing = 0
    for r in _rows(split_csv, ("sat_relpath", "ground_relpath")):
        sat, ground = r[0].strip(), r[1].strip()
        rec = records.setdefault(sat, SatRecord(sat))
        rec.grounds.append(ground)
        if (sat, ground) not in offsets:
            missing += 1
        rec.offsets.append(offsets.get((sat, ground), (0.0, 0.0)))
    if missing:
        log.warning("%d pairs of %s have no pixel offset; using the image centre", missing, split_csv)
    return list(records.values())


def write_official(root: str | Path, splits: dict[str, list[SatRecord]]) -> None:
    """Write ``splits`` (name -> records) and one ``pixel_offset.csv`` in the official layout."""
    root = Path(root)
    (root / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    with open(root / OFFSETS, "w", newline="") as off:
        ow = csv.writer(off)
        ow.writerow(["sat", "ground", "dx", "dy"])
        for name, records in splits.items():
            with open(root / SPLIT_DIR / f"{name}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["sat_relpath", "ground_relpath"])
                for rec in records:
                    for g, (dx, dy) in zip(rec.grounds, rec.offsets):
                        w.writerow([rec.sat, g])
                        ow.writerow([rec.sat, g, f"{dx:.3f}", f"{dy:.3f}"])
