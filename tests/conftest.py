"""Fixtures shared by the test modules."""

import pytest
import scanpy as sc

import falcon_sc as fs


@pytest.fixture(scope="session")
def separated_run():
    """Well separated simulated subtypes (900 cells, 3 coarse → 7 fine, true split 4 / 1 / 2) discovered once
    with the default preset, for every test that reads a finished default run. Copy it before changing it."""
    adata = fs.datasets.simulate_hierarchy(900, 400, 3, 7, fine_separation=2.0, random_state=3)
    fs.tl.discover_subtypes(adata, "coarse", n_fine=7, n_top_genes=400, progress=False)
    return adata


@pytest.fixture
def small():
    """300 cells, 3 coarse → 5 fine: fast runs that check behaviour, not accuracy."""
    return fs.datasets.simulate_hierarchy(300, 120, 3, 5, random_state=0)


@pytest.fixture
def scanpy_log(caplog):
    """What falcon_sc logs through scanpy's logger (which does not propagate to Python's root logger) during
    the test, as ``caplog`` records."""
    logger, verbosity = sc.settings._root_logger, sc.settings.verbosity
    logger.addHandler(caplog.handler)
    sc.settings.verbosity = max(int(verbosity), 1)  # warnings at least
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        sc.settings.verbosity = verbosity
