"""Scenes: rasters of any size answered window by window (``docs/scenes.md``).

- :class:`WindowPlan`: overlapping windows whose cores tile the scene's cell grid;
- :class:`SceneMaps`: scene-wide score maps and instances (the engine's map source for scenes);
- :class:`FeatureStore`: the on-disk, memory-mapped feature cache of scenes.
"""
from __future__ import annotations

from graft_vqa.scene.features import FeatureStore
from graft_vqa.scene.maps import SceneMaps
from graft_vqa.scene.plan import PlannedWindow, WindowPlan

__all__ = ["FeatureStore", "PlannedWindow", "SceneMaps", "WindowPlan"]
