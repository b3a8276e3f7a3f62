"""How many CPU threads a stage uses.

torch's default (one thread per physical core) suits the large matrix products of PCA and the neighbour
search. The training steps of a small MLP are as fast on one thread, and with more they collapse when
other processes compete for the cores: pbmc3k took 6.2 s alone and 56 s beside a second run with two
threads on two cores, against 6.6 s and 7.0 s with one thread (issue 18). So training runs on one thread,
and the other stages on the number the caller chooses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits


def resolve_n_jobs(n_jobs: int | None) -> int | None:
    """``None`` (keep the current settings), a positive count, or ``-1`` for every core this process may use."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(f"n_jobs must be a positive integer, -1 (all cores) or None, got {n_jobs!r}.")
    if n_jobs == -1:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return n_jobs


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads and the BLAS/OpenMP pools of NumPy and scikit-learn (threadpoolctl) limited to
    ``n`` for the block, and the caller's settings restored after it; ``None`` changes nothing."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
