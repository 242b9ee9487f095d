"""Programs the sandbox compiled, kept by source so a program run again skips RestrictedPython.

A child compiles its program restricted and, before any program code runs, sends the marshalled
code to the host; the host keeps it here (bounded in bytes) and hands it to the next child that
runs the same source. The host never unmarshals or runs it.
"""
from __future__ import annotations

import hashlib
import threading

from ..core.lru import LRU


class CodeCache:
    """Restricted-compiled programs (marshalled, base64) by source, as children sent them before
    running the program; a byte-bounded LRU (``core.lru``) behind a lock (runs may be concurrent)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes  # most bytes of marshalled code kept
        self._lru: LRU[str, str] = LRU(max_bytes=max_bytes, sizeof=len)
        self._lock = threading.Lock()

    @staticmethod
    def key(source: str) -> str:
        return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, source: str) -> str | None:
        """The code cached for ``source``, or None."""
        with self._lock:
            return self._lru.get(self.key(source))

    def put(self, source: str, code: str) -> None:
        """Keep ``code`` for ``source`` (not when larger than the whole cache)."""
        if len(code) > self.max_bytes:
            return
        with self._lock:
            self._lru.put(self.key(source), code)


CODE_CACHE = CodeCache(4 << 20)
"""The process-wide cache of compiled programs (4 MB)."""
