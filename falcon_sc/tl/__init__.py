"""Tools: FALCON on AnnData."""

from ._discover import discover_subtypes

__all__ = ["discover_subtypes"]
