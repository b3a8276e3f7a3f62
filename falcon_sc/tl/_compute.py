"""The computation behind ``tl.discover_subtypes``: checked inputs → preprocessing → FALCON (with the estimate
of ``n_fine="auto"``) → the outputs, written nowhere (the caller writes them once everything succeeded)."""

from __future__ import annotations

import dataclasses
import functools
import time

from scanpy import logging as logg

from .. import __version__
from .._adata.device import resolve_device
from .._adata.labels import coarse_groups
from .._adata.outputs import Outputs
from .._adata.preprocess import check_target_sum, prepare_embedding, prepare_input
from ..core import distributed, run_falcon
from ..core.estimate import estimate_n_fine
from ..core.progress import epoch_progress
from ..core.threads import cpu_threads, feature_threads
from ..core.trainer import storage_dtype
from ._auto_n_fine import estimate_summary, refine_n_fine
from ._checks import check_obs_options, check_use_rep, fine_request
from ._result import merge_unsupported as merge_unsupported_subtypes
from ._result import outputs_of, report_small_subtypes, sample_support


def streams(prepared, config, n_cells: int) -> bool:
    """Whether the input is read in row blocks rather than densified: a backed or lazy gene matrix that the run
    uses only through its global PCs (above ``class_pcs_max_cells`` cells, where the class PCs are not computed)."""
    genes = prepared.input_kind != "embedding"
    return genes and not prepared.in_memory and config.reads_genes_through_pcs(len(prepared.genes), n_cells)


def run_discovery(
    adata,
    coarse_key,
    dataset_key,
    *,
    n_fine,
    n_fine_range,
    key_added,
    layer,
    use_rep,
    batch_key,
    sample_key,
    merge_unsupported,
    n_top_genes,
    total_counts_feature,
    target_sum,
    preset,
    config,
    random_state,
    device,
    n_jobs,
    progress,
) -> Outputs:
    """The whole computation, writing nothing: validated inputs → preprocessing → FALCON → outputs."""
    start = logg.info(f"discovering subtypes of {coarse_key!r} with FALCON")
    t_start = time.perf_counter()
    torch_device = resolve_device(device)
    check_use_rep(use_rep, layer=layer, batch_key=batch_key, total_counts_feature=total_counts_feature)
    check_target_sum(target_sum)
    if adata.n_obs == 0 or (adata.n_vars == 0 and use_rep is None):
        raise ValueError(f"adata is empty ({adata.n_obs} cells × {adata.n_vars} genes); nothing to discover.")
    groups = coarse_groups(adata, coarse_key, dataset_key)
    fine = fine_request(adata, groups, n_fine, n_fine_range)
    auto, upper, fixed, n_fine_total = fine.auto, fine.upper, fine.fixed, fine.n_fine
    check_obs_options(adata, groups, batch_key=batch_key, sample_key=sample_key, merge_unsupported=merge_unsupported)
    if groups.datasets:
        logg.info(f"    {len(groups.datasets)} datasets with {groups.blocks} coarse classes")

    t0 = time.perf_counter()
    hvg_batch = batch_key if batch_key is not None or not groups.datasets else dataset_key
    if use_rep is not None:
        prepared = prepare_embedding(adata, use_rep)
    else:
        with cpu_threads(n_jobs):  # scanpy's gene selection (numba) on the threads the caller allows
            prepared = prepare_input(
                adata,
                layer=layer,
                n_top_genes=n_top_genes,
                batch_key=hvg_batch,
                total_counts_feature=total_counts_feature,
                target_sum=target_sum,
                progress=progress,
            )
    # "auto" is decided on the genes, not the features (a panel's total-counts feature is one more column);
    # an embedding is never a panel
    n_genes = None if use_rep is not None else len(prepared.genes)
    config = config.replace(
        neighbor_space=config.resolved_neighbor_space(n_genes, adata.n_obs),
        neighbor_metric=config.resolved_neighbor_metric(n_genes),
        neighbor_offset_axis=config.resolved_neighbor_offset_axis(n_genes),
        warm_start_clustering=config.resolved_warm_start_clustering(n_genes, adata.n_obs),
    )
    if streams(prepared, config, adata.n_obs):
        # A backed or lazy matrix too large for the class PCs: never densified whole, read in row blocks on each of
        # the PCA's passes (docs: "Atlases larger than memory").
        if auto:
            raise ValueError(
                f"n_fine='auto' reads every cell's genes at once, but this matrix is read from disk in blocks "
                f"({adata.n_obs} cells, more than class_pcs_max_cells={config.class_pcs_max_cells}). Give n_fine "
                "as a number or a per-class dict, or estimate it on a subsample held in memory "
                "(adata[idx].to_memory())."
            )
        logg.info(f"    reading the {prepared.shape[0]} cells in blocks of rows (backed or lazy input)")
        data = prepared.row_source(torch_device, progress=progress)
    else:
        # Densified block by block straight onto the device (held here until run_falcon returns).
        data = prepared.to_tensor(torch_device, storage_dtype(config))
    t_pre = time.perf_counter() - t0
    reads_totals = prepared.log_totals is not None
    if use_rep is not None:
        logg.info(f"    using the {len(prepared.genes)} dimensions of obsm[{use_rep!r}]")
    else:
        logg.info(
            f"    using {len(prepared.genes)} genes of {prepared.input_kind} input"
            + (f", normalised to {prepared.target_sum:g} counts per cell" if prepared.target_sum else "")
            + (" and log1p(total counts) as a feature (targeted panel: cell size)" if reads_totals else "")
        )
    run = functools.partial(
        run_falcon,
        data,
        groups.codes,
        n_coarse=int(sum(groups.blocks)),
        fixed=fixed,
        coarse_blocks=groups.blocks,
        config=config,
        random_state=random_state,
        device=torch_device,
        n_jobs=n_jobs,
    )
    estimate = refinement = None
    # one progress bar for the whole call, over every training run it makes
    with epoch_progress(progress, main_process=distributed.world()[0] == 0) as bar:
        run = functools.partial(run, progress=bar)
        if auto:
            t0 = time.perf_counter()
            with cpu_threads(feature_threads(n_jobs, adata.n_obs)):
                estimate = estimate_n_fine(
                    data, groups.codes, groups.blocks, bounds=n_fine_range, random_state=random_state
                )
            t_estimate = time.perf_counter() - t0
            logg.info(
                f"    estimated n_fine = {estimate.n_fine} (unclipped {estimate.unclipped}) in {t_estimate:.1f} s"
            )
            # the estimate also says where the subtypes are: M starts from the first dataset's per-class counts
            run = functools.partial(run, initial_fine_per_coarse=estimate.per_group[: groups.blocks[0]])
            result, refinement = refine_n_fine(run, estimate.n_fine, upper)
            n_fine_total = result.relationship.shape[0]
        else:
            result = run(n_fine=n_fine_total)
    del data
    timings = {"preprocessing": t_pre, **result.timings, "total": time.perf_counter() - t_start}
    if auto:
        timings["n_fine_estimate"] = t_estimate
    result = dataclasses.replace(result, timings=timings)

    params = {
        "coarse_key": coarse_key,
        "dataset_key": dataset_key,
        "datasets": groups.datasets or None,
        "n_fine": n_fine_total,
        "n_fine_auto": auto,
        "n_fine_range": list(n_fine_range) if n_fine_range is not None else None,
        "fine_fixed": fixed is not None,
        "layer": layer,
        "use_rep": use_rep,
        "batch_key": batch_key,
        "sample_key": sample_key,
        "merge_unsupported": merge_unsupported,
        "n_top_genes": n_top_genes,
        "input_kind": prepared.input_kind,
        "total_counts_feature": reads_totals,
        "target_sum": target_sum,
        # what counts were scaled to before log1p (None: the input was not counts)
        "normalize_total": prepared.target_sum,
        "preset": preset if isinstance(preset, str) else "custom",
        "random_state": random_state,
        "device": str(torch_device),
        "n_jobs": n_jobs,
        "config": config.to_dict(),
        "schedule": dict(
            batch_size=result.schedule.batch_size,
            steps_per_epoch=result.schedule.steps_per_epoch,
            epochs=result.schedule.epochs,
            total_steps=result.schedule.total_steps,
            solve_every=result.schedule.solve_every,
        ),
        "falcon_sc_version": __version__,
    }
    outputs = outputs_of(result, groups, prepared.genes, params, config, prepared.description())
    report_small_subtypes(outputs, config)
    if sample_key is not None:
        samples = sample_support(adata.obs[sample_key], outputs.labels, outputs.fine_names, min_cells=5)
        outputs.uns["support"] = outputs.uns["support"].join(samples)
        single = [f for f in samples.index[samples["one_sample"]] if outputs.uns["support"].loc[f, "n_cells"] > 0]
        if single:
            logg.warning(
                f"{len(single)} subtype(s) come from one {sample_key!r} value ({', '.join(single[:8])}"
                f"{', …' if len(single) > 8 else ''}): they may be a donor or batch effect, not a cell state."
            )
    if merge_unsupported:
        merged = merge_unsupported_subtypes(outputs)
        outputs.uns["params"]["merged"] = merged
        outputs.model.training["merged"] = merged
        if merged:
            logg.warning(
                f"merged {len(merged)} unsupported subtype(s) into a sibling: "
                + ", ".join(f"{name} → {into}" for name, into in merged.items())
            )
    if estimate is not None:
        kept = result.relationship.sum(0)  # fine classes per (dataset, coarse class) in the kept result
        outputs.uns["n_fine_estimate"] = estimate_summary(estimate, refinement, kept, groups, n_fine_range)
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"added\n    .obs[{key_added!r}], .obs['{key_added}_confidence'] (fine labels, confidence)\n"
            f"    .obsm['{key_added}_probs'] (fine-class probabilities)\n"
            f"    .uns[{key_added!r}] (relationship, history, params)"
        ),
    )
    return outputs
