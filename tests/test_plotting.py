"""Plots and markers after a discovery run: structure of what is drawn, one rendered PNG per plot."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scanpy as sc
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import falcon_sc as fs
from falcon_sc import metrics


@pytest.fixture(scope="module")
def run(separated_run):
    """The shared default run (900 cells, 3 coarse → 7 fine), with a 2-D embedding to draw on."""
    adata = separated_run.copy()
    adata.obsm["X_umap"] = np.asarray(adata.obsm["falcon_probs"][:, :2]) + np.random.default_rng(0).normal(
        size=(adata.n_obs, 2)
    )
    return adata


def png(fig: Figure, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    plt.close(fig)


def test_relationship_graph_draws_every_node_edge_and_label(run, tmp_path):
    adata = run.copy()
    adata.uns.pop("falcon_colors", None)  # absent: set from scanpy's palette, like scanpy does
    ax = fs.pl.relationship_graph(adata, show=False)
    n_fine, n_coarse = adata.obs["falcon"].cat.categories.size, 3
    assert len(ax.lines) == n_fine  # one edge per fine class
    coarse_nodes, fine_nodes = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(coarse_nodes.get_offsets()) == n_coarse and len(fine_nodes.get_offsets()) == n_fine
    assert len(ax.texts) == n_coarse + n_fine
    colors = adata.uns["falcon_colors"]
    assert len(colors) == n_fine
    np.testing.assert_allclose(fine_nodes.get_facecolors()[:, :3], [matplotlib.colors.to_rgb(c) for c in colors])
    png(ax.figure, tmp_path, "relationship")


def test_relationship_graph_compares_with_known_labels(run):
    adata = run.copy()
    fig = fs.pl.relationship_graph(adata, compare_to="fine", return_fig=True)
    ax = fig.axes[0]
    dominant = metrics.dominant_labels(adata.obs["fine"], adata.obs["falcon"])
    annotated = {t.get_text().split(" (")[0]: t.get_text() for t in ax.texts if "%)" in t.get_text()}
    assert set(annotated) == set(dominant.index)
    for name, text in annotated.items():
        assert text.endswith(f": {dominant.loc[name, 'label']} ({dominant.loc[name, 'share']:.0%})")
    green = matplotlib.colors.to_rgb("#2a9d3f")
    n_green = sum(matplotlib.colors.to_rgb(line.get_color()) == green for line in ax.lines)
    assert f"{n_green} of {len(ax.lines)} edges agree" in ax.get_title()
    assert n_green == len(dominant)  # this run recovers the true tree
    with pytest.raises(KeyError, match="compare_to"):
        fs.pl.relationship_graph(adata, compare_to="nope", show=False)


def test_relationship_graph_never_names_a_subtype_after_a_label_it_shares_no_cell_with(run):
    """Two known C0 types merged into one label, and a few C2 cells given a label of their own: the one-to-one
    matching then pairs a C0 subtype with that label although they share no cell (issue 18, item 1)."""
    adata = run.copy()
    known = adata.obs["fine"].astype(str).to_numpy().copy()
    c0 = sorted({k for k in known if k.startswith("C0")})
    known[np.isin(known, c0[:2])] = "C0 merged"
    c2_cells = np.flatnonzero(known == sorted({k for k in known if k.startswith("C2")})[0])
    known[c2_cells[:5]] = "ghost"
    adata.obs["known"] = known
    matched = metrics.match_labels(adata.obs["known"], adata.obs["falcon"])
    shares = {f: ((adata.obs["falcon"] == f).to_numpy() & (known == k)).sum() for f, k in matched.items()}
    assert min(shares.values()) > 0  # no pairing without a shared cell
    ax = fs.pl.relationship_graph(adata, compare_to="known", show=False)
    texts = [t.get_text() for t in ax.texts]
    merged = [t for t in texts if t.startswith("C0/")]
    assert sum("C0 merged (100%)" in t for t in merged) == 2, merged
    assert not any("ghost" in t and t.startswith("C0/") for t in texts)
    red = matplotlib.colors.to_rgb("#d62728")
    assert not any(matplotlib.colors.to_rgb(line.get_color()) == red for line in ax.lines)


@pytest.mark.parametrize("size", [(8, 3), (4, 2)])  # the figure FALCON makes, and a small one passed as ax
def test_relationship_graph_keeps_every_text_inside_the_figure(run, size):
    """Long labels (a known type's long name, "[unsupported]") once ran past the right edge and were cut off."""
    adata = run.copy()
    adata.obs["known"] = adata.obs["fine"].astype(str) + " (a long name from a reference atlas, level 3)"
    support = adata.uns["falcon"]["support"].copy()
    support["supported"] = False
    adata.uns["falcon"]["support"] = support
    fig, ax = plt.subplots(figsize=size)
    fs.pl.relationship_graph(adata, compare_to="known", ax=ax, show=False)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in [*ax.texts, ax.title] if t.get_text()]
    assert any(t.get_text().endswith("[unsupported]") for t in texts)
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1, text.get_text()
        assert fig.bbox.y0 <= extent.y0 and extent.y1 <= fig.bbox.y1, text.get_text()
    plt.close(fig)


def test_subtypes_one_panel_per_coarse_class(run, tmp_path):
    axes = fs.pl.subtypes(run, show=False)
    assert [ax.get_title() for ax in axes] == ["C0", "C1", "C2"]
    for ax, name in zip(axes, ["C0", "C1", "C2"], strict=True):
        in_class = (run.obs["coarse"] == name).to_numpy()
        # grey background of all cells, then one scatter per subtype of this class
        assert len(ax.collections[0].get_offsets()) == run.n_obs
        assert sum(len(c.get_offsets()) for c in ax.collections[1:]) == in_class.sum()
        assert len(ax.get_legend().get_texts()) == len(ax.collections) - 1
    one = fs.pl.subtypes(run, coarse="C2", show=False)
    assert len(one) == 1 and one[0].get_title() == "C2"
    png(one[0].figure, tmp_path, "subtypes")
    with pytest.raises(ValueError, match="Unknown coarse"):
        fs.pl.subtypes(run, coarse="C9", show=False)
    with pytest.raises(KeyError, match="X_tsne"):
        fs.pl.subtypes(run, basis="tsne", show=False)


def test_training_history_plots_each_term_and_m_changes(run, tmp_path):
    ax_loss, ax_m = fs.pl.training_history(run, show=False)
    epochs = len(run.uns["falcon"]["history"]["total"])
    assert [line.get_label() for line in ax_loss.lines] == ["coarse", "neighbor", "confidence", "reg", "total"]
    np.testing.assert_allclose(ax_loss.lines[-1].get_ydata(), run.uns["falcon"]["history"]["total"])
    assert len(ax_m.patches) == epochs
    moved = np.asarray(run.uns["falcon"]["history"]["relationship_changes"])
    assert [p.get_height() for p in ax_m.patches] == moved.tolist()
    assert any(t.get_text() == "M unchanged\nduring training" for t in ax_m.texts) == (not moved.any())
    png(ax_loss.figure, tmp_path, "history")
    still = run.copy()
    still.uns["falcon"] = {**still.uns["falcon"], "history": {**still.uns["falcon"]["history"]}}
    still.uns["falcon"]["history"]["relationship_changes"] = [0] * epochs
    _, ax_still = fs.pl.training_history(still, show=False)
    assert [t.get_text() for t in ax_still.texts] == ["M unchanged\nduring training"]
    assert ax_still.get_ylim() == (0.0, 1.0)


def test_confusion_orders_columns_by_matching(run, tmp_path):
    fig = fs.pl.confusion(run, "falcon", "fine", return_fig=True)
    ax = fig.axes[0]
    values = ax.images[0].get_array()
    assert values.shape == (7, run.obs["falcon"].nunique())
    np.testing.assert_allclose(values.sum(1), 1.0)  # rows normalised
    accuracy = metrics.cluster_accuracy(run.obs["fine"], run.obs["falcon"])
    assert ax.get_title() == f"ACC {100 * accuracy:.1f} after matching"
    # Matched pairs sit on the diagonal.
    columns = [t.get_text() for t in ax.get_xticklabels()]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    matched = metrics.match_labels(run.obs["fine"], run.obs["falcon"])
    # every matched subtype is a column on the diagonal, in the row of its match
    on_diagonal = [(c, rows[i]) for i, c in enumerate(columns[: len(rows)]) if c in matched]
    assert len(on_diagonal) == len(matched) > 0 and all(matched[c] == row for c, row in on_diagonal)
    png(fig, tmp_path, "confusion")


def test_markers_recover_the_simulated_marker_genes(run, tmp_path):
    adata = run.copy()
    fs.tl.subtype_markers(adata, n_genes=20)
    markers = adata.uns["falcon_markers"]
    shifts = adata.uns["simulation"]["fine_shifts"]
    fine_names = list(adata.uns["simulation"]["fine_names"])
    parents = adata.uns["simulation"]["fine_parent"]
    matched = metrics.match_labels(adata.obs["fine"], adata.obs["falcon"])
    tested = markers["names"].dtype.names
    assert set(tested) == {s for s in adata.obs["falcon"].cat.categories if not s.startswith("C1/")}  # C1: 1 subtype
    hits = []
    for subtype in tested:
        f = fine_names.index(matched[subtype])
        siblings = [g for g, p in enumerate(parents) if p == parents[f] and g != f]
        contrast = shifts[f] - shifts[siblings].mean(0)  # true log-fold change against the siblings
        true_up = set(adata.var_names[np.argsort(-contrast)[:20]])
        hits.append(len(set(markers["names"][subtype][:5]) & true_up) / 5)
    assert np.mean(hits) >= 0.8, hits
    assert set(markers["table"]["coarse"]) == {"C0", "C2"}
    fig = fs.pl.subtype_markers(adata, n_genes=3, return_fig=True)
    fig.make_figure()
    # colours are mean log-normalised expression, not raw counts (X holds counts here)
    normalised = adata.copy()
    sc.pp.normalize_total(normalised, target_sum=1e4)
    sc.pp.log1p(normalised)
    genes = list(fig.dot_color_df.columns)
    expected = normalised[:, genes].to_df().groupby(normalised.obs["falcon"], observed=True).mean()
    np.testing.assert_allclose(fig.dot_color_df.to_numpy(), expected.loc[fig.dot_color_df.index].to_numpy(), rtol=1e-4)
    assert fig.dot_color_df.to_numpy().max() < np.log1p(1e4)
    png(fig.fig, tmp_path, "markers")
    with pytest.raises(KeyError, match="subtype_markers"):
        fs.pl.subtype_markers(run.copy(), show=False)


def test_plots_need_a_result():
    autoshow = sc.settings.autoshow
    adata = fs.datasets.simulate_hierarchy(100, 50, 2, 3, random_state=0)
    for plot in (fs.pl.relationship_graph, fs.pl.training_history, fs.pl.subtypes):
        with pytest.raises(KeyError, match="discover_subtypes"):
            plot(adata, show=False)
    with pytest.raises(KeyError, match="discover_subtypes"):
        fs.tl.subtype_markers(adata)
    assert sc.settings.autoshow == autoshow  # untouched by the plots
