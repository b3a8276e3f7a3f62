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
    assert recall >= 0.8 and precision >= 0.8, (recall, precision)
    truly = adata.obs.loc[suspects.index, "coarse"].astype(str)
    assert (suspects["suggested"].astype(str) == truly).mean() >= 0.8  # and where they belong
    assert list(suspects.columns) == ["coarse", "suggested", "agreement"]
    assert suspects["agreement"].is_monotonic_increasing and (suspects["agreement"] < 0.5).all()
    assert (suspects["coarse"].astype(str) != suspects["suggested"].astype(str)).mean() >= 0.8
    # cells that agree point to their own class
    suggested, own = adata.obs["falcon_suggested_coarse"].astype(str), adata.obs["noisy"].astype(str)
    assert (suggested[~found] == own[~found]).all()


def test_threshold_and_missing_check_errors(flipped, small):
    adata, _ = flipped
    assert len(fs.tl.suspect_labels(adata, threshold=0.0)) == 0
    assert len(fs.tl.suspect_labels(adata, threshold=1.0)) >= len(fs.tl.suspect_labels(adata))
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
