import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import torch

from falcon_sc.core import FalconConfig
from falcon_sc.core.pca import fit_pca
from falcon_sc.core.pipeline import n_components


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 2.0, size=(300, 12)).astype(np.float32)
    x[:, 3] = 1.0  # a constant feature
    x[0, 7] = 500.0  # an extreme value, clipped by standardisation
    return x


def test_standardisation_matches_scanpy_scale(data):
    pca = fit_pca(torch.tensor(data), 4, standardize=True, max_value=10.0)
    reference = ad.AnnData(data.copy())
    sc.pp.scale(reference, max_value=10)
    z = pca.standardize(torch.tensor(data)).numpy()
    np.testing.assert_allclose(z, reference.X, atol=1e-4)
    assert np.all(z[:, 3] == 0) and z.max() == pytest.approx(10.0)


@pytest.mark.parametrize("standardize", [False, True])
def test_scores_match_svd_up_to_sign(data, standardize):
    x = torch.tensor(data)
    pca = fit_pca(x, 4, standardize=standardize, max_value=10.0)
    z = pca.standardize(x).double().numpy()
    z = z - z.mean(0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    expected = u[:, :4] * s[:4]
    scores = pca.transform(x, chunk_size=64).double().numpy()  # chunked transform, same result
    np.testing.assert_allclose(np.abs(scores), np.abs(expected), atol=1e-3)
    np.testing.assert_allclose(pca.scale.numpy(), scores.std(0, ddof=1), rtol=1e-4)


def test_number_of_components_follows_fine_classes():
    assert [n_components(FalconConfig(), k) for k in (3, 9, 20, 83, 200)] == [10, 10, 21, 84, 201]
    assert n_components(FalconConfig(n_pcs=7), 83) == 7


@pytest.mark.parametrize(
    ("n_cells", "n_features"),
    [(500, 400), (40, 300)],  # many features against 4 axes (ARPACK); fewer cells than features (Gram matrix)
)
def test_every_eigensolver_path_gives_the_svd_axes(n_cells, n_features):
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((n_cells, 3)) @ rng.standard_normal((3, n_features)) * 3
    x = torch.tensor(signal + rng.standard_normal((n_cells, n_features)), dtype=torch.float32)
    pca = fit_pca(x, 4)
    z = x.double().numpy() - x.double().numpy().mean(0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    components = pca.components.double().numpy()
    np.testing.assert_allclose(np.abs(components.T @ vt[:4].T), np.eye(4), atol=1e-4)  # same axes, up to sign
    np.testing.assert_allclose(pca.scale.double().numpy(), s[:4] / np.sqrt(n_cells - 1), rtol=1e-4)
    # each axis' largest loading is positive (signs do not depend on the solver)
    assert (components[np.abs(components).argmax(0), np.arange(4)] > 0).all()
