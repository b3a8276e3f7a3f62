"""n_fine="auto": estimating the number of fine classes from the data."""

from types import SimpleNamespace

import anndata as ad
import conftest
import numpy as np
import pandas as pd
import pytest

import falcon_sc as fs
from falcon_sc.core import estimate_n_fine
from falcon_sc.tl._auto_n_fine import refine_n_fine

FAST = conftest.FAST | {"n_top_genes": 200}


@pytest.fixture(scope="module")
def separated():
    """900 cells, 3 coarse → 7 fine (true split 4 / 1 / 2), well separated."""
    return fs.datasets.simulate_hierarchy(900, 200, 3, 7, fine_separation=2.0, random_state=3)


def lognorm(adata):
    counts = adata.X.toarray()
    return np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)


def test_recovers_each_coarse_class_count_on_separated_data(separated):
    codes = separated.obs["coarse"].cat.codes.to_numpy()
    estimate = estimate_n_fine(lognorm(separated), codes)
    true = separated.obs.groupby("coarse", observed=True)["fine"].nunique().to_numpy()
    np.testing.assert_array_equal(estimate.per_group, true)
    assert estimate.n_fine == estimate.unclipped == 7
    # the chosen k has the largest silhouette excess over the Gaussian null, above the threshold
    for g, k in enumerate(estimate.per_group):
        if k > 1:
            assert np.nanargmax(estimate.excess[g]) + 2 == k and estimate.excess[g, k - 2] > 0.05


def test_a_unimodal_elongated_class_is_not_split():
    # one Gaussian cloud per coarse class, strongly elongated: k-means splits it stably, the null does too
    rng = np.random.default_rng(0)
    scale = np.r_[6.0, 3.0, np.ones(38)]
    x = np.vstack([rng.standard_normal((400, 40)) * scale + 10 * c for c in range(3)])
    codes = np.repeat(np.arange(3), 400)
    estimate = estimate_n_fine(x, codes)
    assert list(estimate.per_group) == [1, 1, 1] and estimate.n_fine == 3


def test_tiny_data_and_groups():
    rng = np.random.default_rng(1)
    x = rng.random((45, 30))
    codes = np.r_[np.zeros(25, int), np.ones(15, int), np.full(5, 2)]
    estimate = estimate_n_fine(x, codes)
    # groups under 2 × min_cells_per_subtype cells cannot be split: 1 subtype each, nothing tried (NaN); the
    # first group's 25 cells are uniform noise, with no structure to find: 1 subtype too
    assert list(estimate.per_group) == [1, 1, 1] and np.isnan(estimate.excess[1:]).all() and estimate.n_fine == 3
    assert list(estimate.n_cells) == [25, 15, 5]
    single = estimate_n_fine(x[:1], np.zeros(1, int))
    assert single.n_fine == 1


def test_bounds_clip_and_several_datasets_take_the_median(separated):
    x = lognorm(separated)
    codes = separated.obs["coarse"].cat.codes.to_numpy()
    clipped = estimate_n_fine(x, codes, bounds=(3, 5))
    assert clipped.n_fine == 5 and clipped.unclipped == 7
    assert estimate_n_fine(x, codes, bounds=(8, 10)).n_fine == 8
    # the same cells as two "datasets" (groups 0-2 and 3-5) give the same total each, hence the same median
    twice = estimate_n_fine(np.vstack([x, x]), np.r_[codes, codes + 3], coarse_blocks=[3, 3])
    assert twice.n_fine == 7 and list(twice.per_group) == list(clipped.per_group) * 2


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ((5, 4), "lower > upper"),
        ((2, 9), "below the 3 coarse classes"),
        ((3, 10_000), "exceeds the number of cells"),
        (("a", 4), "two integers"),
        ((3,), "two integers"),
    ],
)
def test_bad_bounds_are_refused(separated, bounds, match):
    codes = separated.obs["coarse"].cat.codes.to_numpy()
    with pytest.raises(ValueError, match=match):
        estimate_n_fine(lognorm(separated), codes, bounds=bounds)
    before = separated.obs.copy()
    with pytest.raises(ValueError, match=match):
        fs.tl.discover_subtypes(separated, "coarse", n_fine="auto", n_fine_range=bounds, **FAST)
    pd.testing.assert_frame_equal(separated.obs, before)
    assert "falcon" not in separated.uns


def test_discover_with_auto_stores_the_estimate_and_its_evidence(separated, tmp_path):
    out = fs.tl.discover_subtypes(separated, "coarse", n_fine="auto", copy=True, **FAST)
    uns = out.uns["falcon"]
    estimate = uns["n_fine_estimate"]
    assert estimate["n_fine"] == uns["params"]["n_fine"] == len(uns["fine_names"]) == 7
    assert uns["params"]["n_fine_auto"] is True
    table = estimate["per_coarse"]
    assert list(table.index) == ["C0", "C1", "C2"] and table["n_subtypes"].sum() == 7
    # the kept result's counts, next to the data estimate (which FALCON's refinement or M may change)
    assert table["n_subtypes"].tolist() == uns["fine_per_coarse"]["n_fine"].loc[table.index].tolist()
    assert table["data_estimate"].sum() == estimate["unclipped"]
    assert table["n_cells"].sum() == separated.n_obs
    assert estimate["excess_silhouette"].shape == (3, 7)
    assert "n_fine_estimate" in uns["timings"]
    again = fs.tl.discover_subtypes(separated, "coarse", n_fine="auto", copy=True, **FAST)
    np.testing.assert_array_equal(
        again.uns["falcon"]["n_fine_estimate"]["excess_silhouette"], estimate["excess_silhouette"]
    )
    out.write_h5ad(tmp_path / "auto.h5ad")
    assert ad.read_h5ad(tmp_path / "auto.h5ad").uns["falcon"]["n_fine_estimate"]["n_fine"] == 7


def test_auto_with_datasets_and_misuse():
    two = fs.datasets.simulate_datasets(300, 150, 6, (2, 3), fine_separation=2.5, random_state=2)
    out = fs.tl.discover_subtypes(two, "coarse", n_fine="auto", dataset_key="dataset", copy=True, **FAST)
    table = out.uns["falcon"]["n_fine_estimate"]["per_coarse"]
    assert list(table["dataset"]) == ["D0", "D0", "D1", "D1", "D1"]
    assert list(table.index[:2]) == ["D0: C0", "D0: C1"]
    with pytest.raises(ValueError, match="leave it out"):
        fs.tl.discover_subtypes(two, "coarse", n_fine=6, n_fine_range=(3, 8), **FAST)
    with pytest.raises(TypeError, match="n_fine must be"):
        fs.tl.discover_subtypes(two, "coarse", n_fine="many", **FAST)


class _Run:
    """Stands in for run_falcon in the refinement: a result whose restart agreement depends on n_fine."""

    def __init__(self, agreement):
        self.agreement, self.calls = agreement, []

    def __call__(self, n_fine):
        self.calls.append(n_fine)
        return SimpleNamespace(n_fine=n_fine, restart_agreement=self.agreement(n_fine))


@pytest.mark.parametrize(
    ("agreement", "upper", "expected", "tried"),
    [
        ({8: 0.71, 9: 0.83, 10: 0.62}.get, 20, 9, [8, 9, 10]),  # one more class kept, the next one not
        ({6: 0.61, 7: 0.48}.get, 20, 6, [6, 7]),  # the estimate stands
        ({5: 0.5, 6: 0.5, 7: 0.6}.get, 7, 7, [5, 6, 7]),  # ties keep the class; stops at the upper bound
        (lambda k: None, 20, 4, [4]),  # one run (no restarts): nothing to compare, the estimate stands
    ],
)
def test_refinement_keeps_a_class_while_restarts_agree_at_least_as_well(agreement, upper, expected, tried):
    run = _Run(agreement)
    result, table = refine_n_fine(run, tried[0], upper)
    assert result.n_fine == expected and run.calls == tried
    assert list(table["n_fine"]) == tried
    assert list(table["kept"]) == [k <= expected for k in tried]
