"""Where training starts: the structure allocation, the k-means and spectral warm starts, the within-class projection,
the neighbour spaces and the total-counts feature of targeted panels."""

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST

import falcon_sc as fs
from falcon_sc import metrics
from falcon_sc._adata.preprocess import prepare_input
from falcon_sc.core import DEFAULT, PAPER, fixed_relationship, proportional_relationship, run_falcon
from falcon_sc.core.allocation import (
    Allocation,
    _lookahead,
    _own_like,
    kmeans_within_classes,
    spectral_within_classes,
    structure_allocation,
    structure_gains,
)
from falcon_sc.core.config import PANEL_MAX_GENES
from falcon_sc.core.model import EMATeacher, make_mlp
from falcon_sc.core.neighbors import within_group_neighbors
from falcon_sc.core.pca import class_pca_scores, combined_scores, fit_pca
from falcon_sc.core.trainer import _warm_start
from falcon_sc.core.views import TensorViews


def blobs(rng, n, centres, spread=0.3):
    """``n`` points split evenly over Gaussian blobs at ``centres``; returns points and blob index."""
    centres = np.asarray(centres, dtype=float)
    which = np.arange(n) % len(centres)
    return centres[which] + spread * rng.standard_normal((n, centres.shape[1])), which


@pytest.fixture
def big_plain_small_structured():
    """Class 0: 900 cells, one elongated Gaussian; class 1: 150 cells in three tight, separated blobs."""
    rng = np.random.default_rng(0)
    plain = rng.standard_normal((900, 5)) * np.array([3.0, 1.0, 1.0, 1.0, 1.0]) + 20.0
    structured, which = blobs(rng, 150, [[0, 0, 0, 0, 0], [4, 0, 0, 0, 0], [0, 4, 0, 0, 0]])
    x = np.vstack([plain, structured])
    coarse = np.r_[np.zeros(900, int), np.ones(150, int)]
    return x, coarse, np.r_[np.zeros(900, int), 1 + which]


def test_structure_allocation_follows_structure_not_size(big_plain_small_structured):
    x, coarse, _ = big_plain_small_structured
    # by size the big unimodal class would get 3 of the 4 fine classes
    assert proportional_relationship(np.bincount(coarse), 4).sum(0).tolist() == [3, 1]
    allocation = structure_allocation(x, coarse, 2, 4)
    assert allocation.method == "structure" and allocation.counts.tolist() == [1, 3]
    gains = structure_gains(x, coarse, 2, 4, random_state=0)
    # relative to each class's sum of squares: two real splits, while splitting the Gaussian gains next to
    # nothing beyond what its own null gains
    total = [((x[coarse == c] - x[coarse == c].mean(0)) ** 2).sum() for c in (0, 1)]
    assert gains[1][:2].min() > 0.1 * total[1] and abs(gains[0][0]) < 0.01 * total[0]
    # a base (e.g. an estimate's per-class counts) is kept and only the rest is allocated
    assert structure_allocation(x, coarse, 2, 5, base=np.array([2, 1])).counts.tolist() == [2, 3]


def test_allocation_records_the_gains_it_chose_by(big_plain_small_structured):
    x, coarse, _ = big_plain_small_structured
    allocation = structure_allocation(x, coarse, 2, 4)
    gains = structure_gains(x, coarse, 2, 3, random_state=0)  # the k range structure_allocation tries here
    # the unimodal class won nothing; the structured one won its last class at the lookahead gain of its third
    # cluster, and every gain it won with is at least what the other class offered for one more
    assert np.isnan(allocation.last_gain[0])
    assert allocation.last_gain[1] == pytest.approx(_lookahead(gains[1][1:]))
    assert allocation.next_gain[0] == pytest.approx(_lookahead(gains[0]))
    assert allocation.last_gain[1] >= allocation.next_gain[0]
    given = Allocation.given(np.array([2, 1]))
    assert given.method == "given" and given.counts.tolist() == [2, 1] and np.isnan(given.last_gain).all()


def test_discover_subtypes_stores_why_each_class_has_its_subtypes(big_plain_small_structured):
    x, coarse, _ = big_plain_small_structured
    names = pd.Categorical(np.array(["big", "small"])[coarse])
    obs = pd.DataFrame({"c": names}, index=np.arange(x.shape[0]).astype(str))
    adata = ad.AnnData(obs=obs, obsm={"X_rep": x.astype(np.float32)})
    fs.tl.discover_subtypes(adata, "c", n_fine=4, use_rep="X_rep", **FAST)
    table = adata.uns["falcon"]["allocation"]
    assert table.index.tolist() == ["big", "small"] and table["n_cells"].tolist() == [900, 150]
    assert (table["method"] == "structure").all() and table["start"].sum() == 4
    assert table["n_subtypes"].tolist() == adata.uns["falcon"]["fine_per_coarse"]["n_fine"].tolist()
    # a class that won a fine class records the gain it won with; one that kept its one does not
    assert (table["last_gain"].notna() == (table["start"] > 1)).all()
    report = fs.tl.subtype_report(adata)
    for parent, row in table.iterrows():
        rows = report[report["parent"] == parent]
        assert rows["allocated"].eq(row["start"]).all()
        assert np.allclose(rows["allocation_gain"], row["last_gain"], equal_nan=True)
    # a dict is used as given, and recorded so
    fs.tl.discover_subtypes(adata, "c", n_fine={"big": 2, "small": 2}, use_rep="X_rep", **FAST)
    table = adata.uns["falcon"]["allocation"]
    assert table["start"].tolist() == [2, 2] and (table["method"] == "given").all()
    assert table["n_subtypes"].tolist() == [2, 2] and table["last_gain"].isna().all()


def test_cells_that_look_like_another_class_do_not_make_a_subtype():
    rng = np.random.default_rng(1)
    a, _ = blobs(rng, 400, [[0, 0, 0]])
    b, _ = blobs(rng, 400, [[10, 0, 0]])
    island, _ = blobs(rng, 60, [[10, 0.5, 0]])  # class-1 cells labelled 0 (mislabelled)
    c, _ = blobs(rng, 200, [[0, 10, 0], [0, 14, 0]])  # class 2: two real subtypes
    x = np.vstack([a, island, b, c])
    coarse = np.r_[np.zeros(460, int), np.ones(400, int), np.full(200, 2)]
    own = _own_like(x, coarse, 3)
    assert not own[400:460].any() and own[:400].all()
    assert structure_allocation(x, coarse, 3, 4).counts.tolist() == [1, 1, 2]


def test_lookahead_sees_past_a_poor_next_split():
    assert _lookahead(np.array([1.0, 5.0, 5.0])) == pytest.approx(11 / 3)
    assert _lookahead(np.array([4.0, -10.0])) == 4.0
    assert _lookahead(np.zeros(0)) == -np.inf


def test_kmeans_start_respects_the_relationship(big_plain_small_structured):
    x, coarse, truth = big_plain_small_structured
    relationship = fixed_relationship([1, 3])
    labels = kmeans_within_classes(x, coarse, relationship, random_state=0)
    assert (relationship.argmax(1)[labels] == coarse).all()  # every label lies under the cell's coarse class
    assert np.bincount(labels, minlength=4).min() > 0
    assert metrics.cluster_accuracy(truth, labels) == 1.0


def test_spectral_start_follows_the_graph_where_kmeans_cuts_across_it():
    """Two interleaved half-moons of unequal size inside coarse class 1: k-means cuts straight across them, the
    spectral start on the within-class neighbour graph separates them; class 0 has one fine class."""
    from sklearn.datasets import make_moons

    moons, truth = make_moons(600, noise=0.05, random_state=0)
    keep = (truth == 0) | (np.arange(600) % 3 == 0)  # 300 against 100 cells
    moons, truth = moons[keep], truth[keep]
    x = np.vstack([np.random.default_rng(0).normal(10, 0.3, (200, 2)), moons]).astype(np.float32)
    coarse = np.r_[np.zeros(200, int), np.ones(len(moons), int)]
    truth = np.r_[np.full(200, -1), truth]
    relationship = fixed_relationship([1, 2])
    graph = within_group_neighbors(x, coarse, 10, metric="euclidean")
    labels = spectral_within_classes(graph, coarse, relationship, random_state=0)
    assert (relationship.argmax(1)[labels] == coarse).all()  # every label lies under the cell's coarse class
    assert (labels[:200] == 0).all()
    assert metrics.adjusted_rand_index(truth[200:], labels[200:]) == 1.0
    assert metrics.adjusted_rand_index(truth[200:], kmeans_within_classes(x, coarse, relationship, 0)[200:]) < 0.6
    np.testing.assert_array_equal(labels, spectral_within_classes(graph, coarse, relationship, random_state=0))


def test_combined_scores_weigh_both_blocks_inside_each_class_and_keep_the_global_offset():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], [50, 80])
    scores = torch.as_tensor(rng.normal(groups[:, None] * 100.0, 3.0, (130, 6)), dtype=torch.float32)
    class_scores = torch.as_tensor(rng.normal(0, 0.01, (130, 4)), dtype=torch.float32)
    out = combined_scores(scores, class_scores, groups).numpy()
    assert out.shape == (130, 10)
    for g in (0, 1):
        for block in (out[groups == g, :6], out[groups == g, 6:]):
            centred = block - block.mean(0)
            assert (centred**2).sum(1).mean() == pytest.approx(block.shape[1], rel=1e-5)  # 1 per column
        # the global block is the group's scores times one factor: its offset from the global centre is kept
        ratio = out[groups == g, :6] / scores[groups == g].numpy()
        np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-4)


def test_warm_start_fits_the_classifier_and_the_teacher_to_the_labels(big_plain_small_structured):
    x, _, truth = big_plain_small_structured
    torch.manual_seed(0)
    views = TensorViews(torch.as_tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32))
    model = make_mlp(5, 4, n_layers=2, hidden_dim=32)
    teacher = EMATeacher(model, 0.99)
    _warm_start(model, teacher, views, truth, 256, DEFAULT, torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = teacher(views.x).argmax(1).numpy()
    assert (predicted == truth).mean() > 0.95
    for p, q in zip(model.parameters(), teacher.module.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.fixture(scope="module")
def structured_sim():
    """4 coarse → 12 fine with uneven splits, where the size-proportional split is not the true one."""
    adata = fs.datasets.simulate_hierarchy(1500, 300, 4, 12, fine_separation=1.5, imbalance=1.0, random_state=2)
    x = prepare_input(adata, layer=None, n_top_genes=300, batch_key=None).to_tensor(torch.device("cpu"))
    coarse = adata.obs["coarse"].cat.codes.to_numpy().astype(np.int64)
    return x, coarse, adata.obs["fine"].astype(str).to_numpy()


@pytest.mark.parametrize(
    "options", [{}, dict(neighbor_space="combined", warm_start_clustering="spectral")], ids=["default", "spectral"]
)
def test_run_falcon_starts_where_the_structure_is_and_repeats_exactly(structured_sim, options):
    x, coarse, fine = structured_sim
    config = DEFAULT.replace(min_total_steps=300, n_restarts=2, **options).resolved(n_genes=300, n_cells=1500)
    first = run_falcon(x, coarse, n_coarse=4, n_fine=12, config=config, random_state=3, progress=False)
    again = run_falcon(x, coarse, n_coarse=4, n_fine=12, config=config, random_state=3, progress=False)
    np.testing.assert_array_equal(first.probs, again.probs)
    true_counts = metrics.true_relationship(fine, coarse).sum(0).to_numpy()
    learned_counts = first.relationship.sum(0)
    sized = proportional_relationship(np.bincount(coarse), 12).sum(0)
    assert np.abs(learned_counts - true_counts).sum() < np.abs(sized - true_counts).sum()
    assert metrics.cluster_accuracy(fine, first.labels) > 0.9
    assert np.bincount(first.labels, minlength=12).min() > 0  # no empty subtype


def test_warm_start_needs_a_proportional_start(structured_sim):
    x, coarse, _ = structured_sim
    config = DEFAULT.replace(relationship_init="random", min_total_steps=10)
    with pytest.raises(ValueError, match="relationship_init='proportional'"):
        run_falcon(x, coarse, n_coarse=4, n_fine=12, config=config.resolved(n_genes=300, n_cells=1500), progress=False)
    # the engine decides no "auto" itself: the entry point says what the input is
    with pytest.raises(ValueError, match=r"still says 'auto' for \['neighbor_metric'.*config.resolved\(n_genes="):
        run_falcon(x, coarse, n_coarse=4, n_fine=12, config=DEFAULT, progress=False)


def test_paper_preset_runs_the_published_recipe(small):
    """The paper preset trains its classifier on the genes themselves, for 10 epochs of batch 1,024 (one batch of
    all 300 cells here): no PCA, no step budget."""
    adata, model = fs.tl.discover_subtypes(
        small,
        "coarse",
        n_fine=5,
        preset="paper",
        n_top_genes=100,
        total_counts_feature=False,
        progress=False,
        copy=True,
        return_model=True,
    )
    assert model.classifier.projection is None and model.classifier.n_inputs == 100
    schedule = adata.uns["falcon"]["params"]["schedule"]
    assert (schedule["epochs"], schedule["batch_size"], schedule["total_steps"]) == (10, 300, 10)


@pytest.fixture(scope="module")
def panel():
    return fs.datasets.simulate_hierarchy(
        600, 30, 2, 5, de_fraction=0.3, library_size_effect=0.7, fine_separation=1.0, random_state=1
    )


def test_panel_counts_keep_log_total_counts_as_a_feature(panel):
    prepared = prepare_input(panel, layer=None, n_top_genes=30, batch_key=None, total_counts_feature="auto")
    assert panel.n_vars <= PANEL_MAX_GENES and prepared.shape == (600, 31)
    x = prepared.to_tensor(torch.device("cpu")).numpy()
    np.testing.assert_allclose(x[:, -1], np.log1p(np.asarray(panel.X.sum(1)).ravel()), rtol=1e-5)
    plain = prepare_input(panel, layer=None, n_top_genes=30, batch_key=None, total_counts_feature=False)
    np.testing.assert_array_equal(plain.to_tensor(torch.device("cpu")).numpy(), x[:, :-1])
    # log-normalised values carry no totals: "auto" leaves them out, True is refused with the fix
    logged = panel.copy()
    logged.X = np.log1p(logged.X.toarray() / 7.0)
    auto = prepare_input(logged, layer=None, n_top_genes=30, batch_key=None, total_counts_feature="auto")
    assert auto.log_totals is None
    with pytest.raises(ValueError, match="needs raw counts"):
        prepare_input(logged, layer=None, n_top_genes=30, batch_key=None, total_counts_feature=True)
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        prepare_input(panel, layer=None, n_top_genes=30, batch_key=None, total_counts_feature="yes")


def test_a_panel_model_reads_total_counts_again_on_new_cells(panel, tmp_path):
    adata = panel.copy()
    model = fs.tl.discover_subtypes(
        adata,
        "coarse",
        n_fine=5,
        n_top_genes=30,
        progress=False,
        return_model=True,
        min_total_steps=200,
        n_restarts=1,
        neighbor_space="class_pca",
    )
    assert adata.uns["falcon"]["params"]["total_counts_feature"]
    assert adata.uns["falcon"]["params"]["config"]["neighbor_space"] == "class_pca"
    assert model.reads_total_counts and model.classifier.n_inputs == 31
    model.save(tmp_path / "m")
    loaded = fs.FalconModel.load(tmp_path / "m")
    query = panel.copy()
    loaded.predict(query, coarse_key="coarse")
    np.testing.assert_allclose(query.obsm["falcon_probs"], adata.obsm["falcon_probs"], atol=1e-5)
    logged = panel.copy()
    logged.X = np.log1p(logged.X.toarray() / 7.0)
    with pytest.raises(ValueError, match="total counts"):
        loaded.predict(logged)


def test_class_pca_scores_are_each_classes_own_components(structured_sim):
    x, coarse, _ = structured_sim
    groups = coarse.copy()
    groups[:2] = 7  # a two-cell class fills one column
    groups[2] = 8  # a one-cell class has no axes: zeros
    scores = class_pca_scores(x, groups, 5, max_value=10.0).numpy()
    for g in (0, 1, 2, 3):
        cells = np.flatnonzero(groups == g)
        own = fit_pca(x[cells], 5, standardize=True, max_value=10.0).transform(x[cells]).numpy()
        np.testing.assert_allclose(scores[cells], own, atol=1e-4)
        np.testing.assert_allclose(scores[cells].mean(0), 0, atol=1e-3)
    assert np.all(scores[:2, 1:] == 0) and np.abs(scores[:2, 0]).min() > 0
    assert np.all(scores[2] == 0)
    # more components asked than there are features (an 8-dimensional embedding): the extra columns stay 0
    few = class_pca_scores(x[:, :3], groups, 5).numpy()
    assert few.shape == (x.shape[0], 5) and np.all(few[:, 3:] == 0) and np.abs(few[groups == 0, :3]).min() > 0


def test_auto_neighbour_space_and_warm_start_follow_the_input():
    """The default's class PCs are for gene inputs of at most class_pcs_max_cells cells, its spectral starts for
    whole transcriptomes among them; embeddings and larger inputs keep the representation's neighbours and
    k-means starts, and targeted panels k-means starts."""
    few, many = DEFAULT.class_pcs_max_cells, DEFAULT.class_pcs_max_cells + 1
    for n_genes, n_cells, space, clustering in (
        (PANEL_MAX_GENES + 1, few, "combined", "spectral"),
        (PANEL_MAX_GENES, few, "combined", "kmeans"),  # a targeted panel
        (None, few, "representation", "kmeans"),  # an embedding
        (2000, many, "representation", "kmeans"),
    ):
        resolved = DEFAULT.resolved(n_genes=n_genes, n_cells=n_cells)
        assert (resolved.neighbor_space, resolved.warm_start_clustering) == (space, clustering)
        assert not resolved.unresolved() and DEFAULT.unresolved()
    unlimited = DEFAULT.replace(class_pcs_max_cells=None)
    assert unlimited.resolved(n_genes=2000, n_cells=many).neighbor_space == "combined"
    paper = PAPER.resolved(n_genes=2000, n_cells=100)
    assert paper == PAPER  # nothing to decide: the paper's options are fixed
    explicit = DEFAULT.replace(neighbor_space="class_pca", warm_start_clustering="spectral")
    assert explicit.resolved(n_genes=None, n_cells=many).neighbor_space == "class_pca"
    assert explicit.resolved(n_genes=30, n_cells=many).warm_start_clustering == "spectral"


def test_class_pcs_find_purer_neighbours_on_a_panel():
    """On a 40-gene panel, the subtypes' genes are drowned by those that separate the coarse classes in a global
    PCA; per-class PCs recover them (sim-panel of bench/accuracy.py, smaller)."""
    adata = fs.datasets.simulate_hierarchy(
        1500, 40, 3, 9, de_fraction=0.25, fine_separation=0.4, library_size_effect=0.5, random_state=5
    )
    x = prepare_input(adata, layer=None, n_top_genes=40, batch_key=None, total_counts_feature="auto")
    x = x.to_tensor(torch.device("cpu"))
    coarse = adata.obs["coarse"].cat.codes.to_numpy()
    fine = adata.obs["fine"].cat.codes.to_numpy()
    global_scores = fit_pca(x, 10, standardize=True, max_value=10.0).transform(x)

    def purity(space):
        graph = within_group_neighbors(space, coarse, 20)
        return (fine[graph.indices] == fine[:, None]).mean()

    # measured 0.80 → 0.85 here (sim-panel itself: 0.79 → 0.92)
    assert purity(class_pca_scores(x, coarse, 10, max_value=10.0)) > purity(global_scores) + 0.03


def test_library_size_effect_changes_only_the_library_sizes():
    plain = fs.datasets.simulate_hierarchy(400, 50, 2, 4, random_state=5)
    sized = fs.datasets.simulate_hierarchy(400, 50, 2, 4, library_size_effect=1.0, random_state=5)
    assert (plain.obs["fine"] == sized.obs["fine"]).all()
    totals = np.asarray(sized.X.sum(1)).ravel()
    per_fine = [np.median(totals[sized.obs["fine"] == f]) for f in sized.obs["fine"].cat.categories]
    assert max(per_fine) / min(per_fine) > 1.5  # fine types differ in size
    with pytest.raises(ValueError, match="min_cells_per_fine"):
        fs.datasets.simulate_hierarchy(400, 50, 2, 4, min_cells_per_fine=0)


def test_subtypes_left_without_cells_are_named(scanpy_log):
    adata = fs.datasets.simulate_hierarchy(200, 60, 2, 2, random_state=0)  # no substructure to find
    options = dict(progress=False, min_total_steps=100, n_restarts=1)
    fs.tl.discover_subtypes(adata, "coarse", n_fine=60, n_top_genes=60, **options)
    counts = adata.obs["falcon"].value_counts()
    expected = sorted(name for name in adata.uns["falcon"]["fine_names"] if counts.get(name, 0) < 5)
    assert sorted(adata.uns["falcon"]["small_subtypes"]) == expected
    # the warning counts them and names the first ones (60 subtypes of 200 cells always leave some under 5)
    listed = re.search(r"(\d+) of 60 subtypes hold fewer than 5 cells \(([^)]*)\)", scanpy_log.text)
    assert listed and int(listed[1]) == len(expected)
    named = listed[2].removesuffix(", …").split(", ")
    assert len(named) == min(8, len(expected)) and set(named) <= set(expected)


def test_neighbour_metric_auto_is_euclidean_on_whole_transcriptomes_only():
    auto = PAPER.replace(neighbor_metric="auto")

    def metric(config, n_genes):
        return config.resolved(n_genes=n_genes, n_cells=100).neighbor_metric

    assert metric(auto, PANEL_MAX_GENES + 1) == "euclidean"
    assert metric(auto, PANEL_MAX_GENES) == "cosine"  # a targeted panel
    assert metric(auto, None) == "cosine"  # an embedding
    assert metric(DEFAULT, 2000) == "euclidean" and metric(PAPER, 2000) == "cosine"
    assert metric(auto.replace(neighbor_metric="euclidean"), 30) == "euclidean"


def test_the_resolved_neighbour_metric_is_recorded_and_changes_the_neighbours():
    adata = fs.datasets.simulate_hierarchy(600, PANEL_MAX_GENES + 100, 3, 6, random_state=0)
    runs = {}
    for metric in ("auto", "cosine"):
        runs[metric] = fs.tl.discover_subtypes(adata, "coarse", n_fine=6, neighbor_metric=metric, copy=True, **FAST)
    assert runs["auto"].uns["falcon"]["params"]["config"]["neighbor_metric"] == "euclidean"  # 600 genes
    assert runs["cosine"].uns["falcon"]["params"]["config"]["neighbor_metric"] == "cosine"
    assert not np.array_equal(runs["auto"].obsm["falcon_probs"], runs["cosine"].obsm["falcon_probs"])
    on_embedding = adata.copy()
    on_embedding.obsm["X_rep"] = np.log1p(adata.X.toarray()[:, :20])
    fs.tl.discover_subtypes(on_embedding, "coarse", n_fine=6, use_rep="X_rep", **FAST)
    assert on_embedding.uns["falcon"]["params"]["config"]["neighbor_metric"] == "cosine"


def test_offset_axis_auto_is_on_for_gene_inputs_only_and_recorded_resolved(small):
    def offset_axis(config, n_genes):
        return config.resolved(n_genes=n_genes, n_cells=100).neighbor_offset_axis

    assert offset_axis(DEFAULT, PANEL_MAX_GENES) and offset_axis(DEFAULT, 2000)
    assert not offset_axis(DEFAULT, None)  # an embedding (use_rep)
    assert not offset_axis(PAPER, 30)
    assert offset_axis(DEFAULT.replace(neighbor_offset_axis=False), 30) is False
    with pytest.raises(ValueError, match="neighbor_offset_axis expects True, False or 'auto'; got 'yes'"):
        DEFAULT.replace(neighbor_offset_axis="yes")
    small.obsm["X_emb"] = np.random.default_rng(0).standard_normal((small.n_obs, 8)).astype(np.float32)
    for use_rep, expected in ((None, True), ("X_emb", False)):
        run = fs.tl.discover_subtypes(small, "coarse", n_fine=5, use_rep=use_rep, copy=True, **FAST)
        assert run.uns["falcon"]["params"]["config"]["neighbor_offset_axis"] is expected


def test_classes_of_small_subtypes_search_fewer_neighbours():
    """8 subtypes of 15 cells in one class: 20 neighbours reach into other subtypes (at most 14 of a cell's own),
    0.35 of the mean subtype size (5) stay inside it. A class split in two big subtypes keeps 20."""
    rng = np.random.default_rng(0)
    small_subtypes, which = blobs(rng, 120, 4.0 * np.eye(10)[:8])
    big_subtypes, halves = blobs(rng, 120, 4.0 * np.eye(10)[8:])
    x = torch.as_tensor(np.vstack([small_subtypes, big_subtypes]), dtype=torch.float32)
    coarse = np.repeat([0, 1], 120)
    subtype = np.r_[which, 8 + halves]
    config = DEFAULT.replace(min_total_steps=20, support_null_draws=0, coarse_check_neighbors=0)
    config = config.resolved(n_genes=x.shape[1], n_cells=x.shape[0])
    runs = {
        share: run_falcon(
            x, coarse, n_coarse=2, n_fine=10, config=config.replace(neighbor_share=share), progress=False
        ).neighbors
        for share in (0.35, None)
    }
    assert np.unique(runs[0.35].n_valid[:120]).tolist() == [5]  # the allocation gives class 0 its 8 subtypes
    assert np.unique(runs[0.35].n_valid[120:]).tolist() == [20]
    np.testing.assert_array_equal(runs[None].n_valid, 20)
    purity = {share: (subtype[g.indices[:120]] == subtype[:120, None]).mean() for share, g in runs.items()}
    assert purity[0.35] == 1.0 and purity[None] <= 14 / 20
    assert PAPER.neighbor_share is None
    with pytest.raises(ValueError, match=r"neighbor_share=0.0 is out of range; it must lie in \(0"):
        DEFAULT.replace(neighbor_share=0)
