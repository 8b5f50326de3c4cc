"""Running one function over many files, in worker processes when that pays (``--jobs``).

Shared by ``check`` and ``migrate``. The shared arguments (the spec, options) are sent to each
worker once, when it starts, rather than with every batch of files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["map_files"]

_R = TypeVar("_R")

# What each worker process runs: the function and the arguments every call shares.
_JOB: tuple[Callable[..., Any], tuple[Any, ...]] | None = None


def _start_worker(function: Callable[..., Any], shared: tuple[Any, ...]) -> None:
    global _JOB  # noqa: PLW0603 - one job per worker process, set once when it starts
    _JOB = (function, shared)


def _run_batch(batch: list[tuple[Any, ...]]) -> list[Any]:
    assert _JOB is not None
    function, shared = _JOB
    return [function(*item, *shared) for item in batch]


def map_files(
    function: Callable[..., _R],
    work: Sequence[tuple[Any, ...]],
    shared: tuple[Any, ...],
    *,
    jobs: int,
    threshold: int,
) -> list[_R]:
    """``[function(*item, *shared) for item in work]``, in order.

    ``jobs``: 0 uses one worker per CPU, only when there are more than ``threshold`` items
    (starting workers costs more than a few files take); 1 none; N exactly N workers (obeyed
    from two items on). ``function`` and ``shared`` must pickle (a module-level function).
    """
    workers = jobs or os.cpu_count() or 1
    if workers > 1 and len(work) > (1 if jobs else threshold):
        from concurrent.futures import ProcessPoolExecutor

        size = max(1, len(work) // (workers * 4))
        batches = [list(work[i : i + size]) for i in range(0, len(work), size)]
        with ProcessPoolExecutor(
            workers, initializer=_start_worker, initargs=(function, shared)
        ) as pool:
            return [result for batch in pool.map(_run_batch, batches) for result in batch]
    return [function(*item, *shared) for item in work]
