"""Datasets with a known coarse → fine hierarchy, for demos, tests and benchmarks."""

from ._pbmc68k import PBMC68K_COARSE, pbmc68k_hierarchy
from ._simulate import simulate_hierarchy

__all__ = ["PBMC68K_COARSE", "pbmc68k_hierarchy", "simulate_hierarchy"]
