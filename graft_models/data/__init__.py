"""Ground-satellite pair data: the official layout, a pair builder, multi-positive batching."""
from graft_models.data.official import SatRecord, read_official, write_official
from graft_models.data.dataset import PairBatch, PairDataset, collate_pairs

__all__ = ["SatRecord", "read_official", "write_official", "PairBatch", "PairDataset", "collate_pairs"]
