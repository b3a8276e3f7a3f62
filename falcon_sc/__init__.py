"""falcon_sc: discover fine-grained cell subtypes inside coarse labels with FALCON (Grcić et al., ICML 2024)."""

from . import core, datasets, metrics, pl, tl
from ._logging import route_engine_logs
from ._version import __version__
from .falcon_model import FalconModel, ModelFileError

route_engine_logs()

__all__ = ["FalconModel", "ModelFileError", "__version__", "core", "datasets", "metrics", "pl", "tl"]
