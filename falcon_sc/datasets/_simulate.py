from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

_MIN_CELLS_PER_FINE = 5
_CHUNK = 10_000


def simulate_hierarchy(
    n_cells: int = 3000,
    n_genes: int = 2000,
    n_coarse: int = 4,
    n_fine: int = 10,
    *,
    coarse_separation: float = 2.0,
    fine_separation: float = 1.0,
    de_fraction: float = 0.05,
    imbalance: float = 0.5,
    dispersion: float = 0.1,
    mean_library_size: float = 5000.0,
    gene_mean_spread: float = 1.0,
    library_size_effect: float = 0.0,
    min_cells_per_fine: int = _MIN_CELLS_PER_FINE,
    random_state: int = 0,
    counts_layer: bool = True,
    device: str | None = None,
) -> ad.AnnData:
    """Simulated UMI counts with a known coarse → fine hierarchy.

    How it is made (all draws from ``numpy.random.default_rng(random_state)``):

    1. Hierarchy: every coarse class gets one fine class; the other ``n_fine − n_coarse`` are assigned to
       coarse classes uniformly at random.
    2. Sizes: fine class ``f`` has weight ``exp(imbalance · z_f)``, ``z_f ~ N(0, 1)``; each fine class gets
       ``min_cells_per_fine`` cells, the rest are drawn multinomially with probabilities proportional to the
       weights.
    3. Expression: gene ``g`` has a baseline log-mean ``b_g ~ N(0, gene_mean_spread²)`` (a larger spread puts
       more of the counts on a few genes, and more zeros on the others, as in real panels). Each coarse class
       shifts a random ``de_fraction`` of the genes by ``coarse_separation · N(0, 1)``; each fine class shifts
       another random ``de_fraction`` of the genes by ``fine_separation · N(0, 1)``. Relative expression of a
       cell is the softmax over genes of the summed log-means.
    4. Counts: library sizes ``~ LogNormal(log(mean_library_size), 0.3)``, times ``exp(library_size_effect ·
       N(0, 1))`` per fine class (cell size differs between fine types, as in targeted panels); counts are
       negative binomial with that mean and ``dispersion`` (variance ``μ + dispersion·μ²``), drawn as a
       Gamma–Poisson mixture — with numpy, or with torch on ``device`` (e.g. ``"cuda"``, seeded by
       ``random_state``; much faster for millions of cells, different draws).

    ``counts_layer=False`` skips the copy of the counts in ``layers["counts"]`` (saves memory at scale).

    Returns
    -------
    AnnData with CSR float32 counts in ``X`` and ``layers["counts"]``, categorical ``obs["coarse"]`` (names
    ``"C0"``, …) and ``obs["fine"]`` (names ``"C0.F0"``, … naming the parent), and in ``uns["simulation"]``
    the parameters, the true fine → coarse assignment and each fine class's gene shifts (``fine_shifts``).
    """
    if n_fine < n_coarse:
        raise ValueError(f"n_fine ({n_fine}) must be at least n_coarse ({n_coarse}).")
    if min_cells_per_fine < 1:
        raise ValueError(f"min_cells_per_fine must be ≥ 1, got {min_cells_per_fine}.")
    if n_cells < min_cells_per_fine * n_fine:
        raise ValueError(f"n_cells must be at least {min_cells_per_fine} × n_fine = {min_cells_per_fine * n_fine}.")
    if not 0 < de_fraction <= 1:
        raise ValueError(f"de_fraction must be in (0, 1], got {de_fraction}.")
    rng = np.random.default_rng(random_state)

    parents = np.r_[np.arange(n_coarse), rng.integers(0, n_coarse, n_fine - n_coarse)]
    parents = np.sort(parents)
    weights = np.exp(imbalance * rng.standard_normal(n_fine))
    sizes = min_cells_per_fine + rng.multinomial(n_cells - min_cells_per_fine * n_fine, weights / weights.sum())
    fine_of_cell = rng.permutation(np.repeat(np.arange(n_fine), sizes))

    n_de = max(1, round(de_fraction * n_genes))

    def shifts(n_groups: int, scale: float) -> np.ndarray:
        out = np.zeros((n_groups, n_genes))
        for k in range(n_groups):
            genes = rng.choice(n_genes, n_de, replace=False)
            out[k, genes] = scale * rng.standard_normal(n_de)
        return out

    baseline = gene_mean_spread * rng.standard_normal(n_genes)
    coarse_shifts = shifts(n_coarse, coarse_separation)
    fine_shifts = shifts(n_fine, fine_separation)
    log_means = baseline + coarse_shifts[parents] + fine_shifts
    profiles = np.exp(log_means - log_means.max(1, keepdims=True))
    profiles /= profiles.sum(1, keepdims=True)
    library = mean_library_size * np.exp(0.3 * rng.standard_normal(n_cells))
    if library_size_effect > 0:  # drawn last, so the other draws match a simulation without the effect
        library *= np.exp(library_size_effect * rng.standard_normal(n_fine))[fine_of_cell]

    if device is None:
        blocks = []
        for start in range(0, n_cells, _CHUNK):
            cells = slice(start, min(start + _CHUNK, n_cells))
            mean = library[cells, None] * profiles[fine_of_cell[cells]]
            rate = rng.gamma(1.0 / dispersion, mean * dispersion) if dispersion > 0 else mean
            blocks.append(sparse.csr_matrix(rng.poisson(rate).astype(np.float32)))
        counts = sparse.vstack(blocks, format="csr")
    else:
        counts = _torch_counts(library, profiles, fine_of_cell, dispersion, device, random_state)

    coarse_names = [f"C{c}" for c in range(n_coarse)]
    rank_in_parent = np.array([np.sum(parents[:f] == parents[f]) for f in range(n_fine)])
    fine_names = [f"C{parents[f]}.F{rank_in_parent[f]}" for f in range(n_fine)]
    obs = pd.DataFrame(
        {
            "coarse": pd.Categorical.from_codes(parents[fine_of_cell], coarse_names),
            "fine": pd.Categorical.from_codes(fine_of_cell, fine_names),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)]))
    if counts_layer:
        adata.layers["counts"] = adata.X.copy()
    adata.uns["simulation"] = {
        "coarse_separation": coarse_separation,
        "fine_separation": fine_separation,
        "de_fraction": de_fraction,
        "imbalance": imbalance,
        "dispersion": dispersion,
        "mean_library_size": mean_library_size,
        "gene_mean_spread": gene_mean_spread,
        "library_size_effect": library_size_effect,
        "random_state": random_state,
        "fine_parent": np.asarray([coarse_names[p] for p in parents], dtype=object),
        "fine_names": np.asarray(fine_names, dtype=object),
        # (n_fine × n_genes) log-mean shift of each fine class: its true marker genes
        "fine_shifts": fine_shifts.astype(np.float32),
    }
    return adata


def simulate_datasets(
    n_cells: int = 3000,
    n_genes: int = 2000,
    n_fine: int = 12,
    n_coarse: tuple[int, ...] = (3, 4),
    *,
    random_state: int = 0,
    **simulation,
) -> ad.AnnData:
    """Several simulated datasets whose coarse labels group one set of fine classes differently.

    The cells are those of :func:`simulate_hierarchy` with ``n_cells × len(n_coarse)`` cells, ``n_fine`` fine
    classes and ``n_coarse[0]`` coarse classes (``simulation`` passes its other options), dealt at random into
    ``len(n_coarse)`` datasets of ``n_cells`` cells. Dataset ``"D0"`` keeps the simulated hierarchy (its
    coarse classes also differ in expression, like lineages); dataset ``"Dl"`` groups the fine classes into
    ``n_coarse[l]`` coarse classes at random (every group gets one fine class, the rest uniformly), so its
    coarse classes cut across those of ``D0`` (like a functional grouping). The same fine class therefore has a
    different parent in each dataset, and coarse names (``"C0"``, …) are reused with a different meaning.

    Returns
    -------
    AnnData with ``obs["dataset"]`` (``"D0"``, ``"D1"``, …), ``obs["coarse"]`` (the cell's coarse label within
    its dataset), ``obs["fine"]`` (shared fine classes) and ``uns["simulation"]["parents"]``, which maps each
    dataset to the parent of every fine class (in the order of ``uns["simulation"]["fine_names"]``).
    """
    n_datasets = len(n_coarse)
    if n_datasets < 1 or min(n_coarse) < 1 or max(n_coarse) > n_fine:
        raise ValueError(f"n_coarse {n_coarse} needs one entry per dataset, each between 1 and n_fine={n_fine}.")
    adata = simulate_hierarchy(
        n_cells * n_datasets, n_genes, n_coarse[0], n_fine, random_state=random_state, **simulation
    )
    rng = np.random.default_rng([random_state, n_datasets])
    fine_names = list(adata.uns["simulation"]["fine_names"])
    fine = adata.obs["fine"].cat.rename_categories(fine_names)  # categories in fine_names order
    dataset = rng.permutation(np.repeat(np.arange(n_datasets), n_cells))
    parents = {"D0": np.asarray(adata.uns["simulation"]["fine_parent"], dtype=object)}
    for d in range(1, n_datasets):
        grouping = rng.permutation(np.r_[np.arange(n_coarse[d]), rng.integers(0, n_coarse[d], n_fine - n_coarse[d])])
        parents[f"D{d}"] = np.asarray([f"C{g}" for g in grouping], dtype=object)
    coarse = np.empty(adata.n_obs, dtype=object)
    for d in range(n_datasets):
        cells = dataset == d
        coarse[cells] = parents[f"D{d}"][fine.cat.codes.to_numpy()[cells]]
    adata.obs["dataset"] = pd.Categorical.from_codes(dataset, [f"D{d}" for d in range(n_datasets)])
    adata.obs["coarse"] = pd.Categorical(coarse)
    adata.uns["simulation"]["parents"] = parents
    return adata


def _torch_counts(library, profiles, fine_of_cell, dispersion, device, seed) -> sparse.csr_matrix:
    """Gamma–Poisson counts drawn with torch on ``device``, assembled into one CSR matrix on the host."""
    import torch

    device = torch.device(device)
    profiles_t = torch.as_tensor(profiles, dtype=torch.float32, device=device)
    data, indices, row_nnz = [], [], []
    # torch's Gamma sampler uses the global generator; fork it so the caller's random state is untouched.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, fine_of_cell.size, _CHUNK):
            cells = slice(start, min(start + _CHUNK, fine_of_cell.size))
            lib = torch.as_tensor(library[cells], dtype=torch.float32, device=device)
            mean = lib[:, None] * profiles_t[torch.as_tensor(fine_of_cell[cells], device=device)]
            if dispersion > 0:
                shape = torch.full_like(mean, 1.0 / dispersion)
                mean = torch.distributions.Gamma(shape, 1.0 / (mean * dispersion)).sample()
            with warnings.catch_warnings():  # torch flags sparse CSR support as beta
                warnings.simplefilter("ignore", UserWarning)
                block = torch.poisson(mean).to_sparse_csr()
            data.append(block.values().cpu().numpy())
            indices.append(block.col_indices().cpu().numpy().astype(np.int32))
            row_nnz.append(np.diff(block.crow_indices().cpu().numpy()))
    indptr = np.r_[0, np.cumsum(np.concatenate(row_nnz))]
    indptr = indptr.astype(np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64)
    shape = (fine_of_cell.size, profiles.shape[1])
    return sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=shape)
