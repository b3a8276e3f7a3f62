"""Evaluation of discovered subtypes against known fine labels and hierarchies."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "adjusted_rand_index",
    "cluster_accuracy",
    "dominant_labels",
    "graph_edit_distance",
    "macro_accuracy",
    "match_labels",
    "normalized_mutual_info",
    "true_relationship",
]


def _as_labels(labels, name: str) -> np.ndarray:
    values = pd.Series(np.asarray(labels).ravel())
    if values.isna().any():
        raise ValueError(f"{name} contains missing labels; drop those cells before evaluating.")
    return values.astype(str).to_numpy()


def _paired(true_labels, predicted) -> tuple[np.ndarray, np.ndarray]:
    true_labels, predicted = _as_labels(true_labels, "true_labels"), _as_labels(predicted, "predicted")
    if true_labels.shape != predicted.shape:
        raise ValueError(f"Label arrays differ in length: {true_labels.size} vs {predicted.size}.")
    return true_labels, predicted


def _matching(true_labels, predicted) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    table = pd.crosstab(*_paired(true_labels, predicted)[::-1])  # predicted × true
    rows, cols = linear_sum_assignment(table.to_numpy(), maximize=True)
    return table, rows, cols


def match_labels(true_labels, predicted) -> dict[str, str]:
    """The best one-to-one matching of predicted to true classes (Hungarian algorithm, most shared cells).

    Returns ``{predicted class: true class}``. Predicted classes left without a partner (when there are more
    of them than true classes) are absent, and so are pairs that share no cell: the assignment pairs up
    leftovers arbitrarily, and such a pair says nothing about either class.
    """
    table, rows, cols = _matching(true_labels, predicted)
    counts = table.to_numpy()
    return {str(table.index[r]): str(table.columns[c]) for r, c in zip(rows, cols, strict=True) if counts[r, c] > 0}


def dominant_labels(true_labels, predicted) -> pd.DataFrame:
    """For every predicted class, the true class most of its cells have.

    Returns a table indexed by predicted class with columns ``label`` (that true class), ``share`` (the
    fraction of the predicted class's cells that have it) and ``n_cells`` (cells in the predicted class).
    Unlike :func:`match_labels`, several predicted classes can name the same true class: the table says what
    each discovered class is, not which one-to-one pairing scores best.
    """
    table = pd.crosstab(*_paired(true_labels, predicted)[::-1])  # predicted × true
    n_cells = table.sum(1)
    return pd.DataFrame(
        {"label": table.idxmax(1).astype(str), "share": table.max(1) / n_cells, "n_cells": n_cells},
        index=table.index.astype(str),
    )


def cluster_accuracy(true_labels, predicted) -> float:
    """Accuracy after the best one-to-one matching of predicted to true classes (Hungarian algorithm).

    Predicted classes left without a partner (when there are more of them than true classes) count as errors.
    """
    table, rows, cols = _matching(true_labels, predicted)
    return float(table.to_numpy()[rows, cols].sum() / table.to_numpy().sum())


def macro_accuracy(true_labels, predicted) -> float:
    """Mean over the true classes of the share of their cells in the predicted class matched to them.

    The matching is :func:`cluster_accuracy`'s; a true class left without a partner scores 0. Unlike the
    accuracy, every class counts the same however few cells it has, so missed rare subtypes show.
    """
    table, rows, cols = _matching(true_labels, predicted)
    counts = table.to_numpy()
    recall = np.zeros(counts.shape[1])
    recall[cols] = counts[rows, cols] / counts[:, cols].sum(0)
    return float(recall.mean())


def adjusted_rand_index(true_labels, predicted) -> float:
    """Adjusted Rand index (scikit-learn)."""
    return float(adjusted_rand_score(*_paired(true_labels, predicted)))


def normalized_mutual_info(true_labels, predicted) -> float:
    """Normalised mutual information (scikit-learn, arithmetic normalisation)."""
    return float(normalized_mutual_info_score(*_paired(true_labels, predicted)))


def true_relationship(fine_labels, coarse_labels) -> pd.DataFrame:
    """The true fine → coarse 0/1 matrix from two label columns, as a DataFrame (fine × coarse).

    Raises a ValueError if a fine class occurs under more than one coarse class (not a hierarchy).
    """
    fine, coarse = _paired(fine_labels, coarse_labels)
    table = pd.crosstab(fine, coarse)
    parents_per_fine = (table > 0).sum(1)
    if (parents_per_fine > 1).any():
        bad = list(parents_per_fine.index[parents_per_fine > 1])
        raise ValueError(f"Fine classes {bad} occur under several coarse classes; labels are not a hierarchy.")
    return (table > 0).astype(np.int8)


def graph_edit_distance(learned, true, *, normalized: bool = False) -> float:
    """Graph edit distance between two coarse → fine trees over the same coarse classes.

    Each tree is a 0/1 matrix (fine × coarse; DataFrames are aligned on their coarse columns, arrays must
    list coarse classes in the same order) in which every fine node has exactly one edge, to its parent.
    Coarse nodes are identified; fine nodes are matched to minimise the edits, each costing 1: deleting or
    inserting a fine node, deleting or inserting an edge.

    Closed form: with ``a_c`` and ``b_c`` fine classes under coarse class ``c`` and ``A = Σ a_c``,
    ``B = Σ b_c``, the best matching pairs up ``s = Σ_c min(a_c, b_c)`` fine nodes with the same parent for
    free. Every other matched pair moves its edge (2 edits) and every unmatched node is deleted or inserted
    with its edge (2 edits), so ``GED = 2·(max(A, B) − s)``. With ``normalized=True`` the value is divided by
    its largest possible value ``2·max(A, B)``, giving a number in [0, 1] (0 = identical trees).
    """
    if isinstance(learned, pd.DataFrame) or isinstance(true, pd.DataFrame):
        if not (isinstance(learned, pd.DataFrame) and isinstance(true, pd.DataFrame)):
            raise TypeError("Pass both trees as DataFrames (aligned by coarse column) or both as arrays.")
        columns = learned.columns.union(true.columns)
        learned = learned.reindex(columns=columns, fill_value=0).to_numpy()
        true = true.reindex(columns=columns, fill_value=0).to_numpy()
    learned, true = np.asarray(learned), np.asarray(true)
    if learned.ndim != 2 or true.ndim != 2 or learned.shape[1] != true.shape[1]:
        raise ValueError(
            f"Both trees must be 2-D with the same coarse classes as columns; got {learned.shape} and {true.shape}."
        )
    for name, tree in (("learned", learned), ("true", true)):
        if not np.all(tree.sum(1) == 1):
            raise ValueError(f"Every fine class (row) of the {name} tree must have exactly one parent.")
    per_coarse_a, per_coarse_b = learned.sum(0), true.sum(0)
    largest = max(learned.shape[0], true.shape[0])
    distance = 2.0 * (largest - np.minimum(per_coarse_a, per_coarse_b).sum())
    return float(distance / (2.0 * largest)) if normalized else float(distance)
