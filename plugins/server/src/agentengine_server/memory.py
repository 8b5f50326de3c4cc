"""Giving memory back to the operating system once the server has freed it.

The server's bounds (event retention, finished-run records, the frame cache, the TTL sweep)
free objects, but a freed object's memory goes back to the allocator, not necessarily to the
operating system. Python's small-object allocator returns whole 1 MiB arenas once they are
empty; larger objects (event values, encoded frames, request bodies: anything over 512 bytes)
come from the C allocator, and glibc's ``malloc`` gives back only the top of its heap. After a
burst of large runs the free space is scattered through the heap, so without help the process
keeps its peak RSS for good (measured: 187 MiB held after a burst, 122 MiB after a trim; see
docs/performance.md). ``malloc_trim(0)`` returns every free page of the heap (``madvise``), in
a few milliseconds; the server calls it from its housekeeping loop after it did work (see
``ServerSettings.trim_memory``).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["can_trim_heap", "resident_bytes", "trim_heap"]

_log = structlog.get_logger("agentengine_server.memory")
_UNSET: Any = object()
_malloc_trim: Any = _UNSET


def _trim_function() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS, Windows)."""
    global _malloc_trim  # noqa: PLW0603 - looked up once
    if _malloc_trim is _UNSET:
        _malloc_trim = None
        try:
            libc = ctypes.CDLL(None)  # the symbols of the process itself
            function = libc.malloc_trim
        except (AttributeError, OSError):
            pass
        else:
            function.argtypes = [ctypes.c_size_t]
            function.restype = ctypes.c_int
            _malloc_trim = function
    return _malloc_trim  # type: ignore[no-any-return]


def can_trim_heap() -> bool:
    """True where ``trim_heap`` can return memory (glibc)."""
    return _trim_function() is not None


def trim_heap() -> bool:
    """Return the C heap's free pages to the operating system (glibc ``malloc_trim(0)``).

    True when the allocator supports it (glibc), False where it does not (then nothing is
    done). Cheap when there is little to return; a few milliseconds for hundreds of MiB."""
    trim = _trim_function()
    if trim is None:
        return False
    started = time.perf_counter()
    before = resident_bytes()
    trim(0)
    _log.debug(
        "returned free heap memory to the OS",
        ms=round((time.perf_counter() - started) * 1000, 2),
        rss_before=before,
        rss_after=resident_bytes(),
    )
    return True


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (Linux ``/proc/self/statm``; None
    elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
