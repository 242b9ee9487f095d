"""Giving freed memory back to the system.

Score maps and masks are large arrays that a question allocates and frees by the hundred. glibc
keeps freed blocks below its (self-raising) mmap threshold in the heap, so the process's resident
set stays high after a question even though Python and numpy hold nothing more: 195 ``find``
names on a 515x403 tile left over 200 MB resident that way. :func:`release_free_memory` asks the
allocator to return what is free (``malloc_trim``); elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _malloc_trim():  # -> the C function, or None where there is no glibc
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free memory to the system; True when the allocator released some."""
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except OSError:  # pragma: no cover - a libc that refuses
        log.debug("malloc_trim failed", exc_info=True)
        return False
