"""Plots of FALCON results (scanpy conventions: ``ax``, ``show``, ``return_fig``)."""

from ._label_check import suspect_labels
from ._markers import subtype_markers
from ._relationship import relationship_graph
from ._subtypes import confusion, subtypes, training_history

__all__ = ["confusion", "relationship_graph", "subtype_markers", "subtypes", "suspect_labels", "training_history"]
