"""Tools: FALCON on AnnData."""

from ._discover import discover_subtypes
from ._markers import subtype_markers
from ._transfer import transfer_subtypes

__all__ = ["discover_subtypes", "subtype_markers", "transfer_subtypes"]
