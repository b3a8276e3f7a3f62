"""Fixtures shared by the test modules."""

import pytest
import scanpy as sc


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
