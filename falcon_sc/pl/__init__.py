"""Plots of FALCON results."""

from ._relationship import relationship_graph

__all__ = ["relationship_graph"]
