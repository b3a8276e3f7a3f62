"""Fixtures shared by the test modules, and the threads of parallel test workers.

pytest-xdist's controller process loads this file too but runs no test: the heavy packages are imported where
they are used (a worker's configuration, the fixtures), which saves the controller about 4 s of CPU time while
the workers start."""

import logging
import os

import pytest

#: The one fast training setting of tests that check behaviour, not accuracy (a test module adds its own data
#: options, such as ``n_top_genes``): 200 steps and a single run instead of 1,500 steps and three restarts.
FAST = dict(min_total_steps=200, n_restarts=1, progress=False)
#: The same as ``falcon-sc discover`` options.
FAST_OPTIONS = [arg for key in ("min_total_steps", "n_restarts") for arg in ("--option", f"{key}={FAST[key]}")]


def _xdist_workers() -> int:
    """How many parallel workers pytest-xdist runs (1 in a run without them)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config):
    """Under pytest-xdist, each worker takes its share of the cores (and so do the processes it starts): two
    workers with two threads each on two cores ran the suite no faster than one process (5 min 11 s).

    numba's pool is limited too: its OpenMP layer shares torch's OpenMP runtime, so a numba-parallel scanpy
    call (``rank_genes_groups`` in the marker tests) reset torch to every core behind our back, and the image
    runner test that followed on the same worker took 22–35 s instead of 4 s next to the other worker."""
    workers = _xdist_workers()
    if workers > 1:
        import numba
        import torch
        from threadpoolctl import threadpool_limits

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        threadpool_limits(threads)
        numba.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that share one of our module- or session-scoped fixtures run on one parallel worker (``--dist
    loadgroup``), so that the fixture (most often a training run) is built once rather than once per worker.
    A session fixture decides over a module one, since module fixtures may build on it."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        definitions = getattr(item, "_fixtureinfo", None)
        shared = {}
        for name in getattr(item, "fixturenames", ()):
            found = definitions.name2fixturedefs.get(name) if definitions else None
            if found and found[-1].baseid and found[-1].scope in ("module", "session"):  # baseid "": a plugin's
                shared[name] = found[-1].scope
        sessions = sorted(n for n, scope in shared.items() if scope == "session")
        if sessions:
            item.add_marker(pytest.mark.xdist_group(f"session.{sessions[0]}"))
        elif shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    if _xdist_workers() > 1:
        # Workers take the tests (or groups) in this order: the long ones first, so that none is left to run
        # alone at the end while the other worker idles (slow groups, slow tests, other groups, the rest; a
        # group sits where its first test does). `--no-loadscope-reorder` (addopts) keeps this order: xdist
        # would otherwise put the groups with the most tests first and the slow single tests last.
        items.sort(key=lambda item: (not item.get_closest_marker("slow"), not item.get_closest_marker("xdist_group")))


@pytest.fixture(scope="session")
def separated_run():
    """Well separated simulated subtypes (900 cells, 3 coarse → 7 fine, true split 4 / 1 / 2) discovered once
    with the default preset, for every test that reads a finished default run. Copy it before changing it."""
    import falcon_sc as fs

    adata = fs.datasets.simulate_hierarchy(900, 400, 3, 7, fine_separation=2.0, random_state=3)
    fs.tl.discover_subtypes(adata, "coarse", n_fine=7, n_top_genes=400, progress=False)
    return adata


@pytest.fixture
def small():
    """300 cells, 3 coarse → 5 fine: fast runs that check behaviour, not accuracy."""
    import falcon_sc as fs

    return fs.datasets.simulate_hierarchy(300, 120, 3, 5, random_state=0)


class _ScanpyRecords(logging.Handler):
    """Collects what reaches scanpy's logger, as its ``text``."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)


@pytest.fixture
def scanpy_log():
    """What falcon_sc logs through scanpy's logger (which does not propagate to Python's root logger) during the
    test, at scanpy's verbosity: a handler of that logger's own. (pytest ≥ 9.1 also hands ``caplog`` the records of
    non-propagating loggers, such as the engine's own before scanpy's verbosity filters them.)"""
    import scanpy as sc

    logger, verbosity = sc.settings._root_logger, sc.settings.verbosity
    records = _ScanpyRecords()
    logger.addHandler(records)
    sc.settings.verbosity = max(int(verbosity), 1)  # warnings at least
    try:
        yield records
    finally:
        logger.removeHandler(records)
        sc.settings.verbosity = verbosity
