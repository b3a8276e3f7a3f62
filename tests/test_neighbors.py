import numpy as np
import pytest

from falcon_sc.core import within_group_neighbors
from falcon_sc.core.neighbors import fewer_neighbors, subtype_neighbor_counts


def exact_cosine_knn(x, groups, k):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for i in range(len(x)):
        same = np.flatnonzero((groups == groups[i]) & (np.arange(len(x)) != i))
        sims = unit[same] @ unit[i]
        out.append(set(same[np.argsort(-sims, kind="stable")[:k]]))
    return out


def exact_euclidean_knn(x, groups, k):
    out = []
    for i in range(len(x)):
        same = np.flatnonzero((groups == groups[i]) & (np.arange(len(x)) != i))
        distances = np.linalg.norm(x[same].astype(np.float64) - x[i], axis=1)
        out.append(set(same[np.argsort(distances, kind="stable")[:k]]))
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_neighbors_are_exact_and_never_cross_groups(metric):
    rng = np.random.default_rng(0)
    # rows of different lengths along shared directions: cosine and Euclidean neighbours differ
    x = (rng.standard_normal((300, 8)) * rng.uniform(0.2, 3.0, (300, 1))).astype(np.float32)
    groups = rng.integers(0, 4, 300)
    graph = within_group_neighbors(x, groups, 10, metric=metric, chunk_size=37)  # several chunks per group
    assert graph.indices.shape == (300, 10)
    assert np.all(groups[graph.indices] == groups[:, None])
    assert np.all(graph.indices != np.arange(300)[:, None])
    expected = (exact_cosine_knn if metric == "cosine" else exact_euclidean_knn)(x, groups, 10)
    for i in range(300):
        assert set(graph.indices[i]) == expected[i]
    assert np.all(graph.n_valid == 10)
    other = (exact_euclidean_knn if metric == "cosine" else exact_cosine_knn)(x, groups, 10)
    assert sum(set(graph.indices[i]) != other[i] for i in range(300)) > 100  # the metric matters here


def test_small_groups_use_all_other_members_and_singletons_point_to_themselves():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 5))
    groups = np.array([0] * 24 + [1] * 5 + [2])  # 5 cells < k + 1, and a one-cell group
    graph = within_group_neighbors(x, groups, 20)
    small = np.flatnonzero(groups == 1)
    for i in small:
        assert set(graph.indices[i]) == set(small) - {i}
        assert graph.n_valid[i] == 4
        # the first n_valid entries are the distinct neighbours
        assert len(set(graph.indices[i, : graph.n_valid[i]])) == 4
    assert np.all(graph.indices[29] == 29) and graph.n_valid[29] == 1
    big = np.flatnonzero(groups == 0)
    assert np.all(graph.n_valid[big] == 20)


def test_rejects_non_positive_k_and_unknown_metrics():
    with pytest.raises(ValueError, match="n_neighbors"):
        within_group_neighbors(np.ones((3, 2)), np.zeros(3), 0)
    with pytest.raises(ValueError, match=r"Unknown neighbour metric 'l1'; use one of \['cosine', 'euclidean'\]"):
        within_group_neighbors(np.ones((3, 2)), np.zeros(3), 2, metric="l1")


@pytest.mark.xdist_group("nn_descent")  # one worker pays the ~25 s NN-descent compilation
def test_large_groups_use_approximate_search_with_measured_recall():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((6, 10)) * 3
    x = (centres[rng.integers(0, 6, 900)] + rng.standard_normal((900, 10))).astype(np.float32)
    groups = np.array([0] * 700 + [1] * 200)
    graph = within_group_neighbors(x, groups, 10, exact_max_group=300, recall_sample=100)
    assert graph.n_approximate_groups == 1  # only the 700-cell group
    assert np.all(groups[graph.indices] == groups[:, None])
    assert np.all(graph.indices != np.arange(900)[:, None])
    expected = exact_cosine_knn(x, groups, 10)
    small = np.flatnonzero(groups == 1)
    assert all(set(graph.indices[i]) == expected[i] for i in small)  # still exact
    big = np.flatnonzero(groups == 0)
    true_recall = np.mean([len(set(graph.indices[i]) & expected[i]) / 10 for i in big])
    assert true_recall > 0.9
    assert graph.recall == pytest.approx(true_recall, abs=0.05)  # the sampled estimate is close to the truth
    exact = within_group_neighbors(x, groups, 10)
    assert exact.n_approximate_groups == 0 and exact.recall is None
    # Euclidean: NN-descent on the rows themselves, its recall measured against exact Euclidean search
    euclidean = within_group_neighbors(x, groups, 10, metric="euclidean", exact_max_group=300, recall_sample=100)
    expected = exact_euclidean_knn(x, groups, 10)
    true_recall = np.mean([len(set(euclidean.indices[i]) & expected[i]) / 10 for i in big])
    assert true_recall > 0.9 and euclidean.recall == pytest.approx(true_recall, abs=0.05)


def test_offset_axis_is_cosine_on_rows_centred_per_group_with_the_offset_length_appended():
    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1], [120, 80])
    x = (rng.standard_normal((200, 6)) + np.where(groups[:, None] == 0, 4.0, -0.5)).astype(np.float32)
    reference = np.empty((200, 7), dtype=np.float64)
    for g in (0, 1):
        rows = x[groups == g].astype(np.float64)
        reference[groups == g] = np.c_[rows - rows.mean(0), np.full(rows.shape[0], np.linalg.norm(rows.mean(0)))]
    graph = within_group_neighbors(x, groups, 7, metric="cosine", offset_axis=True)
    assert [set(row) for row in graph.indices] == exact_cosine_knn(reference, groups, 7)
    # Euclidean distances do not change under the shift: the flag changes nothing there
    euclidean = within_group_neighbors(x, groups, 7, metric="euclidean", offset_axis=True)
    np.testing.assert_array_equal(euclidean.indices, within_group_neighbors(x, groups, 7, metric="euclidean").indices)


def test_offset_axis_lets_the_angle_see_variation_along_a_group_mean():
    """Two subtypes that differ only along their group's own offset from the origin: with the offset in place the
    angle barely sees them, on its own axis the cosine neighbours separate them."""
    rng = np.random.default_rng(1)
    direction = np.array([1.0, 0.0, 0.0, 0.0])
    subtype = np.repeat([0, 1], 100)
    x = (5.0 + np.where(subtype == 1, 1.5, -1.5))[:, None] * direction + rng.normal(0.0, 0.3, (200, 4))
    groups = np.zeros(200, dtype=int)
    in_place = within_group_neighbors(x.astype(np.float32), groups, 10, metric="cosine")
    own_axis = within_group_neighbors(x.astype(np.float32), groups, 10, metric="cosine", offset_axis=True)
    assert (subtype[own_axis.indices] == subtype[:, None]).mean() > 0.99  # measured 1.00
    assert (subtype[in_place.indices] == subtype[:, None]).mean() < 0.6  # measured 0.54


def test_fewer_neighbors_keeps_each_groups_nearest_as_a_search_for_that_many_would():
    rng = np.random.default_rng(4)
    groups = np.repeat([0, 1, 2], [90, 60, 4])
    x = rng.standard_normal((154, 5)).astype(np.float32)
    graph = within_group_neighbors(x, groups, 12)
    fewer = fewer_neighbors(graph, groups, np.array([5, 12, 8]))
    np.testing.assert_array_equal(fewer.n_valid, np.repeat([5, 12, 3], [90, 60, 4]))  # the 4-cell group has 3
    for g, k in ((0, 5), (1, 12)):
        rows = np.flatnonzero(groups == g)
        searched = within_group_neighbors(x, groups, k)
        assert [set(r) for r in fewer.indices[rows]] == [set(r) for r in searched.indices[rows]]
    # rows stay rectangular, cycling through the kept neighbours as the search pads short rows
    np.testing.assert_array_equal(fewer.indices[0], np.resize(graph.indices[0, :5], 12))
    assert fewer_neighbors(graph, groups, np.array([20, 20, 20])) is graph  # nothing to drop


def test_subtype_neighbor_counts_follow_the_mean_subtype_size_within_bounds():
    counts = subtype_neighbor_counts(
        sizes=np.array([290, 939, 32, 70, 14]),
        fine_per_group=np.array([10, 10, 1, 2, 2]),
        n_neighbors=20,
        share=0.35,
        minimum=5,
    )
    # 0.35 × 29 = 10.2 → 10; 0.35 × 93.9 → at most 20; one fine class keeps 20; 0.35 × 35 = 12.25 → 12; 2.45 → 5
    np.testing.assert_array_equal(counts, [10, 20, 20, 12, 5])
