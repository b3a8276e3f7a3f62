"""Datasets with a known coarse → fine hierarchy, for demos, tests, tutorials and benchmarks."""

from ._covid import COVID_CHALLENGE_URL, pbmc_covid_challenge
from ._pbmc3k import pbmc3k_hierarchy
from ._pbmc68k import PBMC68K_COARSE, pbmc68k_hierarchy
from ._simulate import simulate_datasets, simulate_hierarchy

__all__ = [
    "COVID_CHALLENGE_URL",
    "PBMC68K_COARSE",
    "pbmc3k_hierarchy",
    "pbmc68k_hierarchy",
    "pbmc_covid_challenge",
    "simulate_datasets",
    "simulate_hierarchy",
]
