"""The computation behind ``tl.discover_subtypes``: checked inputs → preprocessing → FALCON (with the estimate
of ``n_fine="auto"``) → the outputs, written nowhere (the caller writes them once everything succeeded)."""

from __future__ import annotations

import dataclasses
import functools
import time

from scanpy import logging as logg

from .._adata.device import resolve_device
from .._adata.labels import CoarseGroups, coarse_groups
from .._adata.outputs import Outputs
from .._adata.preprocess import prepare_embedding, prepare_input
from .._version import __version__
from ..core import FalconConfig, distributed, run_falcon
from ..core.estimate import estimate_n_fine
from ..core.progress import epoch_progress
from ..core.threads import cpu_threads, feature_threads
from ..core.trainer import storage_dtype
from ._auto_n_fine import estimate_summary, refine_n_fine
from ._checks import FineRequest, check_obs_options, fine_request
from ._result import first_names, outputs_of, report_small_subtypes, sample_support
from ._result import merge_unsupported as merge_unsupported_subtypes
from ._settings import DiscoverySettings


@dataclasses.dataclass
class _Input:
    """The preprocessed input: the prepared matrix's description, the config resolved for it, and the data the
    engine reads (a tensor on the device, or row blocks of a backed matrix)."""

    prepared: object
    config: FalconConfig
    data: object
    seconds: float


def run_discovery(adata, coarse_key: str, dataset_key: str | None, settings: DiscoverySettings) -> Outputs:
    """The whole computation, writing nothing: validated inputs → preprocessing → FALCON → outputs."""
    start = logg.info(f"discovering subtypes of {coarse_key!r} with FALCON")
    t_start = time.perf_counter()
    device = resolve_device(settings.device)
    if adata.n_obs == 0 or (adata.n_vars == 0 and settings.use_rep is None):
        raise ValueError(f"adata is empty ({adata.n_obs} cells × {adata.n_vars} genes); nothing to discover.")
    groups = coarse_groups(adata, coarse_key, dataset_key)
    fine = fine_request(adata, groups, settings.n_fine, settings.n_fine_range)
    check_obs_options(
        adata,
        groups,
        batch_key=settings.batch_key,
        sample_key=settings.sample_key,
        merge_unsupported=settings.merge_unsupported,
    )
    if groups.datasets:
        logg.info(f"    {len(groups.datasets)} datasets with {groups.blocks} coarse classes")
    inputs = _input(adata, groups, dataset_key, settings, device, auto=fine.auto)
    result, estimate, refinement = _train(inputs, groups, fine, settings, device)
    del inputs.data
    timings = {"preprocessing": inputs.seconds, **result.timings, "total": time.perf_counter() - t_start}
    if estimate is not None:
        timings["n_fine_estimate"] = estimate.seconds
    result = dataclasses.replace(result, timings=timings)
    prepared = inputs.prepared
    params = settings.params(
        config=inputs.config,
        coarse_key=coarse_key,
        dataset_key=dataset_key,
        datasets=groups.datasets or None,
        n_fine=result.relationship.shape[0],
        n_fine_auto=fine.auto,
        fine_fixed=fine.fixed is not None,
        input_kind=prepared.input_kind,
        total_counts_feature=prepared.log_totals is not None,
        # what counts were scaled to before log1p (None: the input was not counts)
        normalize_total=prepared.target_sum,
        device=str(device),
        schedule={name: getattr(result.schedule, name) for name in _SCHEDULE},
        falcon_sc_version=__version__,
    )
    outputs = outputs_of(result, groups, prepared.genes, params, inputs.config, prepared.description())
    _annotate(outputs, adata, settings)
    if estimate is not None:
        kept = result.relationship.sum(0)  # fine classes per (dataset, coarse class) in the kept result
        outputs.uns["n_fine_estimate"] = estimate_summary(
            estimate.value, refinement, kept, groups, settings.n_fine_range
        )
    key = settings.key_added
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"added\n    .obs[{key!r}], .obs['{key}_confidence'] (fine labels, confidence)\n"
            f"    .obsm['{key}_probs'] (fine-class probabilities)\n"
            f"    .uns[{key!r}] (relationship, allocation, history, params)"
        ),
    )
    return outputs


_SCHEDULE = ("batch_size", "steps_per_epoch", "epochs", "total_steps", "solve_every")


def _input(adata, groups: CoarseGroups, dataset_key, settings: DiscoverySettings, device, *, auto: bool) -> _Input:
    """Preprocess (genes, or an embedding), resolve every "auto" of the config for that input, and hand the data
    to the device: densified block by block, or, for a backed or lazy matrix the run reads only through its
    global PCs, as row blocks never held whole (docs: "Atlases larger than memory")."""
    t0 = time.perf_counter()
    if settings.use_rep is not None:
        prepared = prepare_embedding(adata, settings.use_rep)
    else:
        batch = settings.batch_key if settings.batch_key is not None or not groups.datasets else dataset_key
        with cpu_threads(settings.n_jobs):  # scanpy's gene selection (numba) on the threads the caller allows
            prepared = prepare_input(
                adata,
                layer=settings.layer,
                n_top_genes=settings.n_top_genes,
                batch_key=batch,
                total_counts_feature=settings.total_counts_feature,
                target_sum=settings.target_sum,
                progress=settings.progress,
            )
    # "auto" is decided on the genes, not the features (a panel's total-counts feature is one more column); an
    # embedding is never a panel
    n_genes = None if prepared.input_kind == "embedding" else len(prepared.genes)
    config = settings.config.resolved(n_genes=n_genes, n_cells=adata.n_obs)
    if n_genes is not None and not prepared.in_memory and config.reads_genes_through_pcs():
        if auto:
            raise ValueError(
                f"n_fine='auto' reads every cell's genes at once, but this matrix is read from disk in blocks "
                f"({adata.n_obs} cells, more than class_pcs_max_cells={config.class_pcs_max_cells}). Give n_fine "
                "as a number or a per-class dict, or estimate it on a subsample held in memory "
                "(adata[idx].to_memory())."
            )
        logg.info(f"    reading the {prepared.shape[0]} cells in blocks of rows (backed or lazy input)")
        data = prepared.row_source(device, progress=settings.progress)
    else:
        data = prepared.to_tensor(device, storage_dtype(config))
    if n_genes is None:
        logg.info(f"    using the {len(prepared.genes)} dimensions of obsm[{settings.use_rep!r}]")
    else:
        logg.info(
            f"    using {n_genes} genes of {prepared.input_kind} input"
            + (f", normalised to {prepared.target_sum:g} counts per cell" if prepared.target_sum else "")
            + (
                " and log1p(total counts) as a feature (targeted panel: cell size)"
                if prepared.log_totals is not None
                else ""
            )
        )
    return _Input(prepared, config, data, time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True)
class _Estimate:
    value: object  # core.estimate.FineCountEstimate
    seconds: float


def _train(inputs: _Input, groups: CoarseGroups, fine: FineRequest, settings: DiscoverySettings, device):
    """FALCON on the prepared input, with the estimate and FALCON's refinement of ``n_fine="auto"``; returns the
    kept result, the estimate (None unless auto) and the refinement's table."""
    run = functools.partial(
        run_falcon,
        inputs.data,
        groups.codes,
        n_coarse=int(sum(groups.blocks)),
        fixed=fine.fixed,
        coarse_blocks=groups.blocks,
        config=inputs.config,
        random_state=settings.random_state,
        device=device,
        n_jobs=settings.n_jobs,
    )
    # one progress bar for the whole call, over every training run it makes
    with epoch_progress(settings.progress, main_process=distributed.world()[0] == 0) as bar:
        run = functools.partial(run, progress=bar)
        if not fine.auto:
            return run(n_fine=fine.n_fine), None, None
        t0 = time.perf_counter()
        with cpu_threads(feature_threads(settings.n_jobs, len(groups.codes))):
            value = estimate_n_fine(
                inputs.data,
                groups.codes,
                groups.blocks,
                bounds=settings.n_fine_range,
                random_state=settings.random_state,
            )
        estimate = _Estimate(value, time.perf_counter() - t0)
        logg.info(f"    estimated n_fine = {value.n_fine} (unclipped {value.unclipped}) in {estimate.seconds:.1f} s")
        # the estimate also says where the subtypes are: M starts from the first dataset's per-class counts
        run = functools.partial(run, initial_fine_per_coarse=value.per_group[: groups.blocks[0]])
        result, refinement = refine_n_fine(run, value.n_fine, fine.upper)
        return result, estimate, refinement


def _annotate(outputs: Outputs, adata, settings: DiscoverySettings) -> None:
    """What the outputs add beyond FALCON's result: nearly empty subtypes named, the samples behind each subtype
    (``sample_key``) and, with ``merge_unsupported``, unsupported subtypes merged into a sibling."""
    report_small_subtypes(outputs)
    if settings.sample_key is not None:
        samples = sample_support(adata.obs[settings.sample_key], outputs.labels, outputs.fine_names, min_cells=5)
        outputs.uns["support"] = outputs.uns["support"].join(samples)
        single = [f for f in samples.index[samples["one_sample"]] if outputs.uns["support"].loc[f, "n_cells"] > 0]
        if single:
            logg.warning(
                f"{len(single)} subtype(s) come from one {settings.sample_key!r} value ({first_names(single)}): "
                "they may be a donor or batch effect, not a cell state."
            )
    if settings.merge_unsupported:
        merged = merge_unsupported_subtypes(outputs)
        outputs.uns["params"]["merged"] = merged
        outputs.model.training["merged"] = merged
        if merged:
            logg.warning(
                f"merged {len(merged)} unsupported subtype(s) into a sibling: "
                + ", ".join(f"{name} → {into}" for name, into in merged.items())
            )
