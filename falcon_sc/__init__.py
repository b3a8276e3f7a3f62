"""falcon_sc: discover fine-grained cell subtypes inside coarse labels with FALCON (Grcić et al., ICML 2024)."""

__version__ = "0.1.0"

from . import core, datasets, metrics, pl, tl
from .falcon_model import FalconModel, ModelFileError

__all__ = ["FalconModel", "ModelFileError", "__version__", "core", "datasets", "metrics", "pl", "tl"]
