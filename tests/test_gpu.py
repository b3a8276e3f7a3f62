"""CUDA paths (run by bench/gpu_check.sh on a GPU machine; skipped without CUDA).

Their logic is covered on the CPU by the other tests; these check that the device code gives the same
answers as the CPU code.
"""

import numpy as np
import pytest
import torch
from scipy import sparse

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc._adata.preprocess import prepare_input
from falcon_sc.core import within_group_neighbors
from falcon_sc.core.pca import fit_pca

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def sim():
    return fs.datasets.simulate_hierarchy(3000, 300, 3, 8, random_state=0, fine_separation=1.5)


def test_densified_input_on_cuda_equals_cpu(sim):
    prepared = prepare_input(sim, layer=None, n_top_genes=300, batch_key=None)
    on_gpu = prepared.to_tensor(CUDA).cpu().numpy()
    np.testing.assert_allclose(on_gpu, prepared.to_tensor(torch.device("cpu")).numpy(), rtol=1e-6, atol=1e-6)
    half = prepared.to_tensor(CUDA, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.device.type == "cuda"


def test_exact_neighbors_on_cuda_equal_cpu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    groups = rng.integers(0, 3, 2000)
    cpu = within_group_neighbors(x, groups, 10)
    gpu = within_group_neighbors(x, groups, 10, device=CUDA)
    same = np.mean([set(a) == set(b) for a, b in zip(cpu.indices, gpu.indices, strict=True)])
    assert same > 0.99  # ties in float32 similarities may order differently


def test_pca_on_cuda_equals_cpu():
    x = sparse.random(5000, 200, density=0.3, random_state=0, dtype=np.float32).toarray()
    cpu = fit_pca(torch.tensor(x), 10, standardize=True, max_value=10.0)
    gpu = fit_pca(torch.tensor(x, device=CUDA), 10, standardize=True, max_value=10.0)
    np.testing.assert_allclose(gpu.components.cpu().numpy(), cpu.components.numpy(), atol=1e-4)


@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_discover_on_cuda_is_as_accurate_as_on_cpu(sim, storage):
    ref = sim.copy()
    fs.tl.discover_subtypes(ref, "coarse", n_fine=8, device="cpu", progress=False, n_restarts=1)
    run = sim.copy()
    fs.tl.discover_subtypes(run, "coarse", n_fine=8, device="cuda", progress=False, storage_dtype=storage, n_restarts=1)
    assert run.uns["falcon"]["params"]["device"].startswith("cuda")
    acc_cpu = metrics.cluster_accuracy(ref.obs["fine"], ref.obs["falcon"])
    acc_gpu = metrics.cluster_accuracy(run.obs["fine"], run.obs["falcon"])
    # Different random streams on the two devices, so not identical; as good within a few points.
    assert acc_gpu >= acc_cpu - 0.05, (acc_gpu, acc_cpu)
    assert run.obsm["falcon_probs"].dtype == np.float32
    np.testing.assert_allclose(run.obsm["falcon_probs"].sum(1), 1.0, atol=1e-4)


def test_cuda_graph_replay_matches_eager_steps():
    from falcon_sc.core import DEFAULT, train_falcon

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 12)) * 2
    fine = rng.integers(0, 6, 3000)
    x = (centres[fine] + rng.standard_normal((3000, 12))).astype(np.float32)
    coarse = fine // 2
    graph = within_group_neighbors(x, coarse, 10, device=CUDA)
    config = DEFAULT.replace(min_total_steps=300, n_restarts=1)
    runs = [
        train_falcon(x, coarse, graph, n_fine=6, config=config.replace(cuda_graphs=g), device=CUDA, progress=False)
        for g in (False, True)
    ]
    eager, graphed = runs
    # Same batches, same kernels; only the order of atomic additions may differ.
    np.testing.assert_array_equal(graphed.relationship, eager.relationship)
    np.testing.assert_allclose(graphed.history["total"], eager.history["total"], rtol=1e-3)
    np.testing.assert_allclose(graphed.probs, eager.probs, atol=1e-3)
