"""Several datasets with their own coarse taxonomies in one run (dataset_key, or a list of AnnData objects)."""

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import conftest
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc._adata.labels import coarse_groups
from falcon_sc.core import get_config, run_falcon, train_falcon
from falcon_sc.core.allocation import joint_start
from falcon_sc.core.initial_relationship import first_dataset_classes

FAST = conftest.FAST | {"n_top_genes": 150}
# Joint runs start from the joint k-means warm start: on `two`, 200 steps give ACC 1.0 (1,500: 0.99; before the
# warm start 200 steps gave 0.52 and 1,500 were needed for 0.94). 400 leave a margin.
FULL = dict(min_total_steps=400, n_restarts=1, progress=False, n_top_genes=150)


@pytest.fixture(scope="module")
def two():
    """Two datasets of 300 cells sharing 8 fine classes; D0 groups them into 3 coarse classes, D1 into 3 others
    (the names C0–C2 are reused with another meaning). Sorted by dataset, the cell order of two objects
    combined."""
    adata = fs.datasets.simulate_datasets(300, 150, 8, (3, 3), fine_separation=2.0, random_state=4)
    return adata[np.argsort(adata.obs["dataset"].cat.codes.to_numpy(), kind="stable")].copy()


@pytest.fixture(scope="module")
def joint(two):
    return fs.tl.discover_subtypes(two, "coarse", n_fine=8, dataset_key="dataset", copy=True, **FULL)


def test_same_label_in_two_datasets_is_two_groups(two):
    groups = coarse_groups(two, "coarse", "dataset")
    assert groups.datasets == ["D0", "D1"] and groups.blocks == [3, 3]
    in_d0 = (two.obs["dataset"] == "D0").to_numpy()
    c0 = (two.obs["coarse"] == "C0").to_numpy()
    assert set(groups.codes[in_d0 & c0]) == {0} and set(groups.codes[~in_d0 & c0]) == {3}
    # one code per (dataset, coarse) pair, numbered dataset by dataset
    pairs = pd.crosstab(groups.codes, [two.obs["dataset"].to_numpy(), two.obs["coarse"].to_numpy()])
    assert ((pairs > 0).sum(1) == 1).all() and ((pairs > 0).sum(0) == 1).all()


def test_neighbors_never_cross_dataset_coarse_groups(two):
    groups = coarse_groups(two, "coarse", "dataset")
    x = np.log1p(two.X.toarray())
    config = get_config("default", min_total_steps=50, n_restarts=1).resolved(n_genes=x.shape[1], n_cells=x.shape[0])
    result = run_falcon(
        x, groups.codes, n_coarse=6, n_fine=8, coarse_blocks=groups.blocks, config=config, progress=False
    )
    graph = result.neighbors
    for cell in range(two.n_obs):
        nbrs = graph.indices[cell, : graph.n_valid[cell]]
        assert np.all(groups.codes[nbrs] == groups.codes[cell])


def test_labels_respect_each_datasets_own_relationship(two, joint):
    uns = joint.uns["falcon"]
    assert set(uns["relationships"]) == {"D0", "D1"}
    for name, view in uns["relationships"].items():
        m = view["relationship_matrix"]
        assert m.shape == (8, 3) and np.all(m.sum(1) == 1) and np.all(m.sum(0) >= 1)
        cells = (joint.obs["dataset"] == name).to_numpy()
        parent = view["relationship"]["coarse"].reindex(joint.obs["falcon"][cells].astype(str)).to_numpy()
        # every cell's subtype belongs, in its own dataset's M, to the cell's own coarse class
        np.testing.assert_array_equal(parent, joint.obs["coarse"][cells].astype(str).to_numpy())
        assert view["relationship"]["n_cells"].sum() == cells.sum()
        assert view["fine_per_coarse"]["n_fine"].sum() == 8
    # the top level describes the first dataset; the fine classes are named after their parent there
    pd.testing.assert_frame_equal(uns["relationship"], uns["relationships"]["D0"]["relationship"])
    assert all(f.split("/")[0] == p for f, p in uns["relationship"]["coarse"].items())
    assert uns["params"]["dataset_key"] == "dataset" and list(uns["params"]["datasets"]) == ["D0", "D1"]


def test_joint_run_learns_each_datasets_taxonomy(two, joint, tmp_path):
    # every subtype that holds cells sits, in each dataset's M_l, under the parent that its cells' (majority)
    # true fine class has in that dataset: D0 and D1 get different, correct relationships
    truth = two.uns["simulation"]["parents"]
    fine_names = list(two.uns["simulation"]["fine_names"])
    assert truth["D0"].tolist() != truth["D1"].tolist()
    assert metrics.cluster_accuracy(two.obs["fine"], joint.obs["falcon"]) >= 0.99  # 1.0 on the 2-core CPU
    majority = pd.crosstab(joint.obs["falcon"], two.obs["fine"]).idxmax(axis=1)
    for name, view in joint.uns["falcon"]["relationships"].items():
        cells = (joint.obs["dataset"] == name).to_numpy()
        assert metrics.cluster_accuracy(two.obs["fine"][cells], joint.obs["falcon"][cells]) >= 0.99
        table = view["relationship"]
        for subtype, fine in majority.items():
            assert table.loc[subtype, "coarse"] == truth[name][fine_names.index(fine)], (name, subtype)
    joint.write_h5ad(tmp_path / "joint.h5ad")
    back = ad.read_h5ad(tmp_path / "joint.h5ad")
    assert set(back.uns["falcon"]["relationships"]) == {"D0", "D1"}


def test_a_list_of_objects_gives_the_dataset_key_result(two, joint):
    d0 = two[two.obs["dataset"] == "D0"].copy()
    d1 = two[two.obs["dataset"] == "D1"].copy()
    d1.obs = d1.obs.rename(columns={"coarse": "lineage"})
    # D1 lists its genes in another order and has a gene D0 lacks: genes are matched by name
    extra = ad.AnnData(np.ones((d1.n_obs, 1), np.float32), obs=d1.obs[[]], var=pd.DataFrame(index=["extra"]))
    d1 = ad.concat([d1[:, ::-1], extra], axis=1, merge="first")
    d1.X = d1.X.tocsr() if hasattr(d1.X, "tocsr") else d1.X
    before = (d0.obs.copy(), d1.obs.copy())
    out = fs.tl.discover_subtypes({"D0": d0, "D1": d1}, ["coarse", "lineage"], n_fine=8, copy=True, **FULL)
    pd.testing.assert_frame_equal(d0.obs, before[0])  # copy=True leaves the inputs unchanged
    pd.testing.assert_frame_equal(d1.obs, before[1])
    assert set(out) == {"D0", "D1"}
    for name in ("D0", "D1"):
        cells = (joint.obs["dataset"] == name).to_numpy()
        np.testing.assert_array_equal(out[name].obs["falcon"].to_numpy(), joint.obs["falcon"][cells].to_numpy())
        np.testing.assert_allclose(out[name].obsm["falcon_probs"], joint.obsm["falcon_probs"][cells], atol=1e-6)
        uns = out[name].uns["falcon"]
        # each object's top-level relationship is its own dataset's
        pd.testing.assert_frame_equal(uns["relationship"], uns["relationships"][name]["relationship"])
        assert uns["params"]["dataset"] == name
    assert out["D1"].uns["falcon"]["params"]["coarse_key"] == "lineage"
    # in place on a list: outputs written into each object
    assert fs.tl.discover_subtypes([d0, d1], ["coarse", "lineage"], n_fine=8, **FAST) is None
    assert "falcon" in d0.obs and "falcon" in d1.obs and "falcon_probs" in d1.obsm


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, dict(dataset_key="nope"), KeyError, "dataset_key 'nope'"),
        (None, dict(dataset_key="coarse"), ValueError, "must be different"),
        ("nan_dataset", {}, ValueError, "missing or empty label"),
        (None, dict(n_fine={"C0": 2, "C1": 3, "C2": 3}), ValueError, "give an int with datasets"),
        (None, dict(n_fine=2), ValueError, "smaller than the 3 coarse classes of a dataset"),
    ],
)
def test_bad_dataset_input_is_refused_and_adata_unchanged(two, change, kwargs, error, match):
    adata = two.copy()
    if change == "nan_dataset":
        adata.obs["dataset"] = adata.obs["dataset"].astype(object)
        adata.obs.iloc[0, adata.obs.columns.get_loc("dataset")] = np.nan
    before = adata.obs.copy()
    args = dict(n_fine=8, dataset_key="dataset") | kwargs
    with pytest.raises(error, match=match):
        fs.tl.discover_subtypes(adata, "coarse", **args, **FAST)
    pd.testing.assert_frame_equal(adata.obs, before)
    assert "falcon" not in adata.uns


def test_bad_lists_are_refused(two, tmp_path):
    d0 = two[two.obs["dataset"] == "D0"].copy()
    other = d0.copy()
    other.var_names = [f"other{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="share no gene names"):
        fs.tl.discover_subtypes([d0, other], "coarse", n_fine=8, **FAST)
    with pytest.raises(ValueError, match="2 coarse keys for 3"):
        fs.tl.discover_subtypes([d0, d0, d0], ["coarse", "coarse"], n_fine=8, **FAST)
    with pytest.raises(KeyError, match="Dataset '1'"):
        fs.tl.discover_subtypes([d0, d0], ["coarse", "nope"], n_fine=8, **FAST)
    with pytest.raises(ValueError, match="dataset_key is for one AnnData"):
        fs.tl.discover_subtypes([d0, d0], "coarse", n_fine=8, dataset_key="dataset", **FAST)
    d0.write_h5ad(tmp_path / "d0.h5ad")
    backed = ad.read_h5ad(tmp_path / "d0.h5ad", backed="r")
    with pytest.raises(ValueError, match="backed AnnData"):
        fs.tl.discover_subtypes([d0, backed], "coarse", n_fine=8, **FAST)
    assert "falcon" not in d0.obs


def test_engine_checks_coarse_blocks():
    x = torch.randn(40, 5)
    coarse = np.repeat(np.arange(4), 10)
    config = get_config("default", min_total_steps=10)
    graph = fs.core.within_group_neighbors(x, coarse, 3)
    with pytest.raises(ValueError, match="sum to n_coarse"):
        train_falcon(x, coarse, graph, n_fine=4, coarse_blocks=[2, 1], config=config, progress=False)
    with pytest.raises(ValueError, match="smaller than the 3 coarse classes of a dataset"):
        train_falcon(x, coarse, graph, n_fine=2, coarse_blocks=[1, 3], config=config, progress=False)


def test_engine_checks_the_shape_of_a_start_relationship():
    x = torch.randn(40, 5)
    coarse = np.repeat(np.arange(4), 10)
    config = get_config("default", min_total_steps=10)
    graph = fs.core.within_group_neighbors(x, coarse, 3)
    with pytest.raises(ValueError, match=r"start_relationship has shape \(5, 4\); expected \(6, 4\)"):
        train_falcon(x, coarse, graph, n_fine=6, start_relationship=np.ones((5, 4)), config=config, progress=False)


def test_relationship_graph_per_dataset_and_side_by_side(joint):
    axes = fs.pl.relationship_graph(joint, show=False)
    assert len(axes) == 2 and [ax.get_title().split(":")[0] for ax in axes] == ["D0", "D1"]
    for ax, name in zip(axes, ["D0", "D1"], strict=True):
        view = joint.uns["falcon"]["relationships"][name]
        assert len(ax.lines) == 8
        coarse_texts = [t.get_text().split(" (")[0] for t in ax.texts[:3]]
        assert coarse_texts == list(view["coarse_names"])
    plt.close("all")
    ax = fs.pl.relationship_graph(joint, dataset="D1", compare_to="fine", show=False)
    # edges are judged against D1's own hierarchy (its grouping of the fine classes), on D1's cells only
    d1 = (joint.obs["dataset"] == "D1").to_numpy()
    matched = metrics.match_labels(joint.obs["fine"][d1], joint.obs["falcon"][d1])
    true_parent = dict(
        zip(joint.uns["simulation"]["fine_names"], joint.uns["simulation"]["parents"]["D1"], strict=True)
    )
    table = joint.uns["falcon"]["relationships"]["D1"]["relationship"]
    agree = sum(true_parent[fine] == table.loc[subtype, "coarse"] for subtype, fine in matched.items())
    assert agree >= 7 and f"{agree} of 8 edges agree" in ax.get_title()
    plt.close("all")
    with pytest.raises(ValueError, match="Unknown dataset 'D9'"):
        fs.pl.relationship_graph(joint, dataset="D9", show=False)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="side by side"):
        fs.pl.relationship_graph(joint, ax=ax, show=False)
    plt.close("all")


def test_markers_and_panels_use_the_first_datasets_taxonomy(joint):
    adata = joint.copy()
    fs.tl.subtype_markers(adata, n_genes=5)
    table = adata.uns["falcon_markers"]["table"]
    parent = adata.uns["falcon"]["relationship"]["coarse"]
    # siblings are the subtypes sharing a parent in D0 (the top-level relationship), over both datasets' cells
    assert (table["group"].map(parent) == table["coarse"]).all()
    assert set(table["coarse"]) <= set(adata.uns["falcon"]["coarse_names"])
    adata.obsm["X_umap"] = np.asarray(adata.obsm["falcon_probs"][:, :2])
    axes = fs.pl.subtypes(adata, show=False)
    assert [ax.get_title() for ax in axes] == list(adata.uns["falcon"]["coarse_names"])
    plt.close("all")


def _lineages_and_a_crossing_grouping():
    """6 tight fine clusters in 3 lineages (a large shared offset each); D0 (first 300 cells) groups them by
    lineage {0,1} {2,3} {4,5}, D1 (next 300) as {0,2} {1,4} {3,5}, which crosses the lineages. Coarse codes:
    D0 0–2, D1 3–5."""
    rng = np.random.default_rng(0)
    centres = np.repeat(20.0 * rng.standard_normal((3, 8)), 2, axis=0) + 4.0 * rng.standard_normal((6, 8))
    fine = np.tile(np.repeat(np.arange(6), 50), 2)
    scores = centres[fine] + rng.standard_normal((fine.size, 8))
    d1_parent = np.array([0, 1, 0, 2, 1, 2])
    coarse = np.r_[fine[:300] // 2, 3 + d1_parent[fine[300:]]]
    return scores.astype(np.float32), fine, coarse, d1_parent


def test_other_datasets_cells_take_the_nearest_first_dataset_class():
    scores, fine, coarse, _ = _lineages_and_a_crossing_grouping()
    proxy = first_dataset_classes(torch.as_tensor(scores), torch.as_tensor(coarse), 3).numpy()
    np.testing.assert_array_equal(proxy[:300], coarse[:300])  # the first dataset keeps its own labels
    np.testing.assert_array_equal(proxy[300:], fine[300:] // 2)  # the others: the lineage they come from


def test_joint_warm_start_splits_the_first_taxonomy_and_derives_the_others():
    scores, fine, coarse, d1_parent = _lineages_and_a_crossing_grouping()
    first = fs.core.fixed_relationship([2, 2, 2])
    relationship, labels = joint_start(scores, coarse, fine // 2, first, (3, 3), random_state=0)
    assert relationship.shape == (6, 6)
    np.testing.assert_array_equal(relationship[:, :3], first)
    assert np.all(relationship[:, 3:].sum(1) == 1) and np.all(relationship[:, 3:].sum(0) >= 1)
    assert metrics.cluster_accuracy(fine, labels) == 1.0
    # each found class's parent in D1 is the D1 group of the fine cluster it found
    found_to_true = pd.crosstab(labels, fine).idxmax(axis=1)
    np.testing.assert_array_equal(relationship[:, 3:].argmax(1), d1_parent[found_to_true.to_numpy()])
    # and every cell's label is one its own dataset's M allows under its coarse label
    assert relationship[labels, coarse].all()


def test_joint_start_moves_a_disallowed_label_to_the_nearest_allowed_class():
    scores, fine, coarse, _ = _lineages_and_a_crossing_grouping()
    proxy = fine // 2
    # a D1 cell of fine cluster 0 (D1 class 0) placed in lineage 2, whose clusters 4 and 5 D1 puts in classes 1 and
    # 2: its k-means label is not allowed under its own class
    assert fine[300] == 0 and coarse[300] == 3
    proxy[300] = 2
    first = fs.core.fixed_relationship([2, 2, 2])
    relationship, labels = joint_start(scores, coarse, proxy, first, (3, 3), random_state=0)
    assert relationship[labels, coarse].all()
    # the allowed class with the nearest centroid is the cell's own fine cluster
    assert labels[300] == pd.Series(labels[fine == fine[300]]).mode()[0]


def test_a_joint_run_starts_from_the_joint_warm_start():
    scores, fine, coarse, _ = _lineages_and_a_crossing_grouping()
    # 10 steps of FALCON after the warm start: the k-means start (ACC 1.0 here) is what the labels show
    options = dict(min_total_steps=10, n_restarts=1, representation="genes", neighbor_metric="euclidean")
    for warm_start, expected in (("kmeans", 1.0), ("none", None)):
        config = get_config("default", warm_start=warm_start, **options)
        config = config.resolved(n_genes=scores.shape[1], n_cells=scores.shape[0])
        result = run_falcon(scores, coarse, n_coarse=6, n_fine=6, coarse_blocks=[3, 3], config=config, progress=False)
        accuracy = metrics.cluster_accuracy(fine, result.labels)
        if expected is None:
            assert accuracy < 0.9  # a cold start has not found the classes after 10 steps
        else:
            assert accuracy == expected
