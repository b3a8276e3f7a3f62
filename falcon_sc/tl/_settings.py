"""The settings of one ``discover_subtypes`` call: every option written once, checked once, and recorded as
``uns[key]["params"]``. ``tl.discover_subtypes`` and the ``falcon-sc discover`` command both build them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._adata.preprocess import check_target_sum
from ..core import FalconConfig, get_config
from ..core.threads import resolve_n_jobs
from ._checks import check_use_rep


@dataclass(frozen=True)
class DiscoverySettings:
    """The options of ``discover_subtypes`` that are not the data or its keys (see its documentation), with
    ``preset`` resolved to ``config`` (a preset's name, or ``"custom"`` for a given config) and ``n_jobs`` to a
    thread count. Build with :meth:`build`, which checks everything before any work."""

    n_fine: int | Mapping[str, int] | Literal["auto"]
    n_fine_range: tuple[int, int] | None
    key_added: str
    layer: str | None
    use_rep: str | None
    batch_key: str | None
    sample_key: str | None
    merge_unsupported: bool
    n_top_genes: int
    total_counts_feature: bool | Literal["auto"]
    target_sum: float | Literal["auto"]
    preset: str
    config: FalconConfig
    random_state: int
    device: str
    n_jobs: int | None
    progress: bool
    copy: bool = False
    return_model: bool = False

    @classmethod
    def build(cls, *, preset: str | FalconConfig = "default", options: Mapping[str, Any] | None = None, **values):
        """Settings from ``discover_subtypes``'s keywords (``values``), the preset and ``options`` (FalconConfig
        fields overriding it). Raises what each check raises, before any work."""
        options = dict(options or {})
        config = get_config(preset, **options)
        if values.get("use_rep") is not None and "standardize" not in options:
            # an embedding's dimensions are not genes: z-scoring them would give its trailing, mostly noise
            # dimensions the weight of the leading ones (simulated batch test: ARI 0.60 z-scored, 1.0 as they are)
            config = config.replace(standardize=False)
        check_use_rep(
            values.get("use_rep"),
            layer=values.get("layer"),
            batch_key=values.get("batch_key"),
            total_counts_feature=values.get("total_counts_feature"),
        )
        check_target_sum(values.get("target_sum", "auto"))
        return cls(
            **values | {"n_jobs": resolve_n_jobs(values.get("n_jobs"))},
            preset=preset if isinstance(preset, str) else "custom",
            config=config,
        )

    def replace(self, **changes) -> DiscoverySettings:
        return dataclasses.replace(self, **changes)

    def params(self, *, config: FalconConfig, **facts) -> dict[str, Any]:
        """The ``uns[key]["params"]`` record: every option as given, ``config`` as the run resolved it, and the
        ``facts`` the run established (datasets, input kind, normalisation, schedule, …)."""
        unrecorded = ("config", "progress", "copy", "return_model")  # how the call runs and returns, not the result
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in unrecorded}
        given["n_fine_range"] = list(self.n_fine_range) if self.n_fine_range is not None else None
        return {**given, **facts, "config": config.to_dict()}
