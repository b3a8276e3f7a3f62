"""The coarse-label check: cells whose neighbours put the classifier's mass on another coarse class."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import falcon_sc as fs


@pytest.fixture(scope="module")
def flipped():
    """1,500 cells, 4 coarse → 10 fine, with 5 % of the coarse labels moved to another class (``noisy``),
    discovered on the noisy labels; also returns which cells were flipped."""
    adata = fs.datasets.simulate_hierarchy(1500, 500, 4, 10, fine_separation=1.5, random_state=0)
    rng = np.random.default_rng(0)
    labels = adata.obs["coarse"].astype(str).to_numpy().copy()
    classes = adata.obs["coarse"].cat.categories.tolist()
    flip = rng.random(adata.n_obs) < 0.05
    for i in np.flatnonzero(flip):
        labels[i] = rng.choice([c for c in classes if c != labels[i]])
    adata.obs["noisy"] = pd.Categorical(labels, categories=classes)
    fs.tl.discover_subtypes(adata, "noisy", n_fine=10, **FAST)
    return adata, flip


def test_flipped_labels_are_found_with_their_true_class(flipped):
    adata, flip = flipped
    agreement = adata.obs["falcon_coarse_agreement"].to_numpy()
    assert agreement.dtype == np.float32 and np.all((agreement >= 0) & (agreement <= 1 + 1e-6))
    suspects = fs.tl.suspect_labels(adata)
    found = adata.obs_names.isin(suspects.index)
    recall, precision = (found & flip).sum() / flip.sum(), (found & flip).sum() / found.sum()
    # 2-core CPU: recall and precision 1.00, every suspect's suggestion its true class
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    truly = adata.obs.loc[suspects.index, "coarse"].astype(str)
    assert (suspects["suggested"].astype(str) == truly).mean() >= 0.95  # and where they belong
    assert list(suspects.columns) == ["coarse", "suggested", "agreement"]
    assert suspects["agreement"].is_monotonic_increasing and (suspects["agreement"] < 0.5).all()
    assert (suspects["coarse"].astype(str) != suspects["suggested"].astype(str)).all()
    # cells that agree point to their own class
    suggested, own = adata.obs["falcon_suggested_coarse"].astype(str), adata.obs["noisy"].astype(str)
    assert (suggested[~found] == own[~found]).all()


def test_threshold_and_missing_check_errors(flipped, small):
    adata, _ = flipped
    # the threshold is on the agreement: exactly the cells below it are suspects, however high it is set
    agreement = adata.obs["falcon_coarse_agreement"]
    for threshold in (0.5, float(np.quantile(agreement, 0.2)), 0.99):
        expected = set(adata.obs_names[(agreement < threshold).to_numpy()])
        assert set(fs.tl.suspect_labels(adata, threshold=threshold).index) == expected
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        fs.tl.suspect_labels(adata, threshold=1.5)
    fs.tl.discover_subtypes(small, "coarse", n_fine=5, coarse_check_neighbors=0, **FAST)
    assert "falcon_coarse_agreement" not in small.obs
    with pytest.raises(KeyError, match="made no coarse-label check"):
        fs.tl.suspect_labels(small)


def test_plot_counts_suspects_per_coarse_class(flipped):
    adata, _ = flipped
    suspects = fs.tl.suspect_labels(adata)
    ax = fs.pl.suspect_labels(adata, show=False)
    assert ax.get_title() == f"{len(suspects)} of {adata.n_obs} cells may be mislabelled"
    drawn = sum(patch.get_width() for patch in ax.patches)
    assert drawn == len(suspects)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(adata.obs["falcon_suggested_coarse"].cat.categories)


def test_neighbor_mass_matches_a_brute_force_search(monkeypatch):
    """Against the definition, computed by brute force: each cell's mean coarse mass over its k most cosine-similar
    cells of the same reference sample and dataset, itself excluded. A small reference sample and query block
    make the test cross block and dataset boundaries, with some cells in the reference and some not."""
    from falcon_sc.core import label_check

    monkeypatch.setattr(label_check, "_MAX_REFERENCE", 40)
    monkeypatch.setattr(label_check, "_CHUNK", 16)
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(130, 6)).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=130).astype(np.float32)
    relationship = np.eye(3, dtype=np.int8)[[0, 0, 1, 2, 2]]
    dataset = np.repeat([0, 1, 2], [70, 59, 1])
    coarse = rng.integers(3, size=130)
    coarse[:4] = 2  # the rest of dataset 0 is re-labelled below: class 2 is rare there and gets topped up
    coarse[4:70] = rng.integers(2, size=66)
    mass = label_check.neighbor_coarse_mass(scores, probs, relationship, coarse, dataset, n_neighbors=4, random_state=7)

    unit = scores / np.linalg.norm(scores, axis=1, keepdims=True)
    coarse_probs = probs @ relationship.astype(np.float32)
    draw = np.random.default_rng(7)  # the same reference samples, drawn in the same order
    expected = np.empty_like(mass)
    for d in range(3):
        cells = np.flatnonzero(dataset == d)
        reference = label_check.reference_cells(cells, coarse, 4, draw)
        if reference.size == 1:
            expected[cells] = coarse_probs[cells]
            continue
        for i in cells:
            candidates = reference[reference != i]
            nearest = candidates[np.argsort(-(unit[candidates] @ unit[i]))[:4]]
            expected[i] = coarse_probs[nearest].mean(0)
    np.testing.assert_allclose(mass, expected, rtol=1e-5, atol=1e-6)


def test_reference_sample_is_uniform_and_keeps_rare_classes(monkeypatch):
    from falcon_sc.core import label_check

    monkeypatch.setattr(label_check, "_MAX_REFERENCE", 100)
    coarse = np.repeat([0, 1, 2], [5000, 30, 3])  # all cells of one dataset, two of its classes rare
    cells = np.arange(coarse.size)
    reference = label_check.reference_cells(cells, coarse, 5, np.random.default_rng(0))
    assert np.all(np.diff(reference) > 0)  # sorted, no cell twice
    per_class = np.bincount(coarse[reference], minlength=3)
    # a uniform draw of 100 holds about 1 cell of class 1 and none of 2: both are topped up (20 = 4 × 5 neighbours)
    assert per_class[1] == 20 and per_class[2] == 3 and 90 <= per_class[0] <= 100
    small = label_check.reference_cells(cells[:60], coarse, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(small, cells[:60])  # under the limit: every cell
