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

#: Below this many cells, PCA and the neighbour search run on one thread unless the caller sets ``n_jobs``: the
#: work is too small for threads to pay, and threads that other processes keep waiting make it several times slower.
#: pbmc3k (2,638 cells) on 2 cores: 4.24 s with two threads, 4.17 s with one, the same result; two runs started
#: together: 6.8 s each with two threads (the neighbour stage 0.82 → 3.4 s), 4.1–4.5 s with one. Simulated
#: 10,000 cells: two threads saved 6 % of the neighbour stage (3.2 → 3.0 s); 30,000 cells: 30 % (10.3 → 6.9 s).
PARALLEL_MIN_CELLS = 20_000


def feature_threads(n_jobs: int | None, n_cells: int) -> int:
    """Threads for PCA and the neighbour search: ``n_jobs`` (see :func:`resolve_n_jobs`) if given, else one below
    ``PARALLEL_MIN_CELLS`` cells and torch's current setting above."""
    resolved = resolve_n_jobs(n_jobs)
    if resolved is not None:
        return resolved
    return 1 if n_cells < PARALLEL_MIN_CELLS else torch.get_num_threads()


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
