"""One small least-recently-used cache, bounded by entries and optionally by bytes.

Used for tiles' root patches, feature grids, SAM embeddings, text embeddings and the app's engines,
so eviction is written once. Not thread-safe: callers that share one across threads lock around it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def nbytes(value: object) -> int:
    """Bytes held by a numpy array or torch tensor (``nbytes``, or ``numel * element_size``); 0 otherwise."""
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    numel, element_size = getattr(value, "numel", None), getattr(value, "element_size", None)
    if callable(numel) and callable(element_size):
        return int(numel()) * int(element_size())
    return 0


class LRU(Generic[K, V]):
    """A mapping that drops its least recently used entries beyond ``max_items`` entries or ``max_bytes``.

    ``sizeof(value)`` measures an entry (default :func:`nbytes`); an entry larger than ``max_bytes`` on
    its own is still kept (alone), so the newest value is always available to the caller.
    """

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None,
                 sizeof: Callable[[V], int] = nbytes, on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items = max_items  # most entries kept (None: no limit)
        self.max_bytes = max_bytes  # most bytes kept, as measured by sizeof (None: no limit)
        self._sizeof = sizeof
        self._on_evict = on_evict  # called with each evicted (key, value)
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0  # bytes held now
        self.evictions = 0  # entries dropped so far (for tests and benchmarks)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for ``key`` (marked as just used), or ``default``."""
        entry = self._data.get(key)
        if entry is None:
            return default
        self._data.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` as the most recent entry, evict beyond the bounds, return ``value``."""
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        size = int(self._sizeof(value))
        self._data[key] = (value, size)
        self.bytes += size
        self._evict()
        return value

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The value for ``key``, computed by ``make()`` and stored when missing."""
        if key in self._data:
            return self.get(key)  # type: ignore[return-value]
        return self.put(key, make())

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key`` and return its value (``default`` when missing); not counted as an eviction."""
        entry = self._data.pop(key, None)
        if entry is None:
            return default
        self.bytes -= entry[1]
        return entry[0]

    def trim(self, max_bytes: int) -> int:
        """Drop least recently used entries until at most ``max_bytes`` are held (every entry, if need
        be: unlike the bound, a trim keeps no oversized entry); return the entries dropped."""
        dropped = 0
        while self._data and self.bytes > max_bytes:
            key, (value, size) = self._data.popitem(last=False)
            self.bytes -= size
            self.evictions += 1
            dropped += 1
            if self._on_evict is not None:
                self._on_evict(key, value)
        return dropped

    def clear(self) -> None:
        """Drop every entry."""
        self._data.clear()
        self.bytes = 0

    def _evict(self) -> None:
        while len(self._data) > 1 and self._over():
            key, (value, size) = self._data.popitem(last=False)
            self.bytes -= size
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(key, value)

    def _over(self) -> bool:
        return ((self.max_items is not None and len(self._data) > self.max_items)
                or (self.max_bytes is not None and self.bytes > self.max_bytes))

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def keys(self) -> list[K]:
        """Keys from least to most recently used."""
        return list(self._data)
