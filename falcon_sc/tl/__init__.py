"""Tools: FALCON on AnnData."""

from ._discover import discover_subtypes
from ._label_check import suspect_labels
from ._markers import subtype_markers
from ._report import subtype_report
from ._transfer import transfer_subtypes

__all__ = ["discover_subtypes", "subtype_markers", "subtype_report", "suspect_labels", "transfer_subtypes"]
