"""Perception for ``find``: scorers (text → score maps), components, SAM refinement, geometry."""
from graft_vqa.perception.components import components, find_instances, merge_duplicates
from graft_vqa.perception.instances import Instance
from graft_vqa.perception.protocols import ImageScorer, Refiner, Scorer
from graft_vqa.perception.scorer import GraftScorer, resize_maps
from graft_vqa.perception.sam import SamRefiner, build_sam

__all__ = ["GraftScorer", "ImageScorer", "Instance", "Refiner", "SamRefiner", "Scorer", "build_sam", "components",
           "find_instances", "merge_duplicates", "resize_maps"]
