import numpy as np
import pandas as pd
import pytest

from falcon_sc import metrics


def test_cluster_accuracy_uses_the_best_matching():
    true = ["a", "a", "b", "b", "c", "c"]
    pred = [2, 2, 0, 0, 0, 1]
    assert metrics.cluster_accuracy(true, pred) == pytest.approx(5 / 6)
    assert metrics.cluster_accuracy(true, ["x"] * 6) == pytest.approx(2 / 6)


def test_ari_and_nmi_are_one_for_relabelled_partitions():
    true = np.array([0, 0, 1, 1, 2])
    assert metrics.adjusted_rand_index(true, [5, 5, 3, 3, 9]) == pytest.approx(1.0)
    assert metrics.normalized_mutual_info(true, [5, 5, 3, 3, 9]) == pytest.approx(1.0)


def test_metrics_reject_mismatched_or_missing_labels():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.cluster_accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="missing"):
        metrics.cluster_accuracy([1, None], [1, 2])


def test_true_relationship_from_label_columns():
    fine = ["n", "m", "c", "b", "n"]
    coarse = ["T", "T", "T", "B", "T"]
    tree = metrics.true_relationship(fine, coarse)
    assert tree.loc["n", "T"] == 1 and tree.loc["b", "B"] == 1 and tree.loc["b", "T"] == 0
    with pytest.raises(ValueError, match="not a hierarchy"):
        metrics.true_relationship(["x", "x"], ["A", "B"])


def tree(per_coarse):
    parents = np.repeat(np.arange(len(per_coarse)), per_coarse)
    return np.eye(len(per_coarse), dtype=int)[parents]


def test_graph_edit_distance_hand_worked_cases():
    # identical trees
    assert metrics.graph_edit_distance(tree([3, 1, 1]), tree([3, 1, 1])) == 0
    # one fine node under the wrong parent: delete its edge and insert the right one
    assert metrics.graph_edit_distance(tree([2, 2, 1]), tree([3, 1, 1])) == 2
    # learned has one extra fine node under coarse 1: delete the node and its edge
    assert metrics.graph_edit_distance(tree([3, 2, 1]), tree([3, 1, 1])) == 2
    # everything under the wrong parent: 4 fine nodes, one matched for free ([3,1] vs [1,3] share 1 + 1)
    assert metrics.graph_edit_distance(tree([3, 1]), tree([1, 3])) == 4
    assert metrics.graph_edit_distance(tree([3, 1]), tree([1, 3]), normalized=True) == pytest.approx(0.5)


def test_graph_edit_distance_aligns_dataframes_by_coarse_name():
    learned = pd.DataFrame(tree([1, 2]), columns=["B", "T"])
    true = pd.DataFrame(tree([2, 1]), columns=["T", "B"])
    assert metrics.graph_edit_distance(learned, true) == 0
    with pytest.raises(ValueError, match="exactly one parent"):
        metrics.graph_edit_distance(np.ones((2, 2)), tree([1, 1]))


def test_macro_accuracy_weighs_every_true_class_equally():
    true = ["a"] * 8 + ["b"] * 2
    # everything in one predicted class: "a" is matched (recall 1), "b" is missed (0)
    assert metrics.macro_accuracy(true, ["x"] * 10) == pytest.approx(0.5)
    assert metrics.cluster_accuracy(true, ["x"] * 10) == pytest.approx(0.8)
    assert metrics.macro_accuracy(true, ["y"] * 8 + ["x"] * 2) == 1.0
    # half of "b" found
    assert metrics.macro_accuracy(true, ["y"] * 8 + ["x", "y"]) == pytest.approx(0.75)


def test_matching_drops_pairs_that_share_no_cell():
    # 3 × 3: the assignment must pair y with c, with which it shares no cell
    true = ["a"] * 8 + ["b", "b", "b", "c"]
    predicted = ["x"] * 5 + ["y"] * 3 + ["z"] * 4
    assert metrics.match_labels(true, predicted) == {"x": "a", "z": "b"}
    assert metrics.cluster_accuracy(true, predicted) == 8 / 12


def test_dominant_labels_say_what_each_class_holds():
    true = ["a"] * 8 + ["b", "b", "b", "c"]
    predicted = ["x"] * 5 + ["y"] * 3 + ["z"] * 4
    table = metrics.dominant_labels(true, predicted)
    assert table["label"].to_dict() == {"x": "a", "y": "a", "z": "b"}
    assert table["share"].to_dict() == {"x": 1.0, "y": 1.0, "z": 0.75}
    assert table["n_cells"].to_dict() == {"x": 5, "y": 3, "z": 4}
