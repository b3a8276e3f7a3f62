"""How many CPU threads a stage uses.

torch's default (one thread per physical core) suits the large matrix products of PCA and the neighbour
search. The training steps of FALCON's small network are cheap operations that several threads must
synchronise on; when other processes compete for the cores, the threads wait for each other and training
collapses. Measured on a 2-core machine with two runs started together: pbmc3k (one restart) 10.3 s alone and
114 s each with two threads, 11.7 s and 13.6 s with one; 20k cells (batch 1024) trained in 230 s with two
threads and 21 s with one (16 s and 25.5 s alone). So k-means and training run on
``FalconConfig.training_threads`` (default 1), and PCA and neighbours on the number the caller chooses.
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
    """torch's intra-op threads, the BLAS/OpenMP pools of NumPy and scikit-learn (threadpoolctl) and numba's
    threads (scanpy's highly-variable-gene and marker statistics) limited to ``n`` for the block, and the
    caller's settings restored after it; ``None`` changes nothing."""
    if n is None:
        yield
        return
    import numba  # a scanpy dependency, imported here so that the engine does not load it for nothing

    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
