"""Tile reading internals; the public entry points are re-exported by :mod:`graft_vqa.tile`."""
