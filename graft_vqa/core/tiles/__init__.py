"""Tiles: read satellite/aerial rasters with their RGB view, georeferencing and areas in m².

The foundations layer (see ``docs/architecture.md``); contracts in ``docs/contracts.md`` ("Tiles"). Documented behaviours:

- images smaller than ``MIN_SIDE`` x ``MIN_SIDE`` (16x16) raise ``UnsupportedTileError``;
- 1-band rasters are replicated to gray RGB; 2-band rasters use their first band as gray (a
  second alpha band masks pixels, any other second band is ignored);
- non-uint8 data is stretched between its 2nd and 98th percentiles; nodata/NaN/alpha-0 pixels
  are 0 in ``rgb()`` and False in ``valid_mask()``; ``rgb()`` of an all-nodata tile raises
  ``UnsupportedTileError``;
- rasters without a CRS (RSVQA images, PNG/JPEG, CRS-less GeoTIFFs) are not georeferenced: areas
  need an explicit ``gsd_m``, else ``area_m2`` raises ``AreaUnavailableError``;
- whole-tile reads of rasters above ``max_pixels`` (64 megapixels by default) raise
  ``UnsupportedTileError``; use ``Tile.windows()`` or ``Tile.crop_window()``.
"""
from __future__ import annotations

from rasterio.windows import Window

from graft_vqa.core.tiles.tile import Tile
from graft_vqa.core.tiles.load import DEFAULT_MAX_PIXELS, MIN_SIDE, load_tile

__all__ = ["Tile", "Window", "load_tile", "MIN_SIDE", "DEFAULT_MAX_PIXELS"]
