"""The one LRU helper: bounded by entries and by bytes, most recent use wins."""
from __future__ import annotations

import numpy as np
import torch

from graft_vqa.core.lru import LRU, nbytes


def test_entry_bound_drops_the_least_recently_used():
    lru = LRU(max_items=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.keys() == ["a", "c"] and lru.evictions == 1


def test_byte_bound_counts_arrays_and_tensors_and_keeps_an_oversized_newest_entry():
    evicted = []
    lru = LRU(max_bytes=1000, on_evict=lambda k, v: evicted.append(k))
    lru.put("a", np.zeros(100, np.float32))  # 400 bytes
    lru.put("b", torch.zeros(100))  # 400 bytes
    assert lru.bytes == 800 and len(lru) == 2
    lru.put("c", np.zeros(100, np.float32))
    assert evicted == ["a"] and lru.bytes == 800
    lru.put("huge", np.zeros(1000, np.float32))  # larger than the bound on its own: kept alone
    assert lru.keys() == ["huge"] and lru.bytes == 4000
    lru.put("huge", np.zeros(10, np.float32))  # replacing an entry re-measures it
    assert lru.bytes == 40


def test_get_or_put_computes_once_and_pop_is_not_an_eviction():
    lru, calls = LRU(max_items=4), []
    assert lru.get_or_put("k", lambda: calls.append(1) or "v") == "v"
    assert lru.get_or_put("k", lambda: calls.append(1) or "w") == "v" and calls == [1]
    assert lru.pop("k") == "v" and lru.evictions == 0 and nbytes("text") == 0
