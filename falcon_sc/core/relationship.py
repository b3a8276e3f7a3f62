"""Exact solver for the fine → coarse relationship matrix M.

FALCON's M-step picks, for every fine class, the one coarse class it belongs to:

    minimise   -Σ_{f,c} cost[f, c]·M[f, c] + w·( Σ_c n_c² / K_C − (K_F / K_C)² )
    subject to Σ_c M[f, c] = 1 for every f,   n_c = Σ_f M[f, c] ≥ 1 for every c,   M ∈ {0, 1}.

HiGHS has no mixed-integer quadratic solver, so the separable quadratic balance term is written exactly
as a sum of unit "slots": n_c = Σ_j z[c, j] with z[c, j] ∈ [0, 1] for j = 1 … K_F − K_C + 1, where slot j
costs w·(2j − 1)/K_C (the increment j² − (j − 1)²). The increments grow with j, so an optimum fills the
slots of a column in order and Σ_j cost·z equals w·n_c²/K_C. Slot 1 has lower bound 1, which is the
"every coarse class gets a fine class" constraint.

The model is a min-cost flow (fine nodes → coarse nodes → slots → sink), so its constraint matrix is
totally unimodular and a simplex vertex is integral. We check integrality of the LP answer and fall back
to the same model with integrality constraints if the check ever fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import highspy
import numpy as np

_INTEGRALITY_TOL = 1e-6
# Creating HiGHS objects is not documented as thread-safe; solves themselves run concurrently.
_HIGHS_LOCK = threading.Lock()


def _validate_cost(cost: np.ndarray, balance_weight: float) -> np.ndarray:
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D array (fine × coarse), got shape {cost.shape}.")
    n_fine, n_coarse = cost.shape
    if n_coarse < 1:
        raise ValueError("cost needs at least one coarse class (column).")
    if n_fine < n_coarse:
        raise ValueError(
            f"cost has {n_fine} fine classes (rows) but {n_coarse} coarse classes (columns); every coarse "
            "class needs at least one fine class, so use at least as many fine classes as coarse classes."
        )
    if not np.all(np.isfinite(cost)):
        bad = int(np.size(cost) - np.isfinite(cost).sum())
        raise ValueError(
            f"cost contains {bad} non-finite value(s) (NaN or inf). This usually means training diverged; "
            "lower the learning rate or check the input data for non-finite values."
        )
    if not np.isfinite(balance_weight) or balance_weight < 0:
        raise ValueError(f"balance_weight must be a finite number ≥ 0, got {balance_weight!r}.")
    return cost


def _build_lp(cost: np.ndarray, balance_weight: float) -> highspy.HighsLp:
    n_fine, n_coarse = cost.shape
    n_assign = n_fine * n_coarse
    # Without a balance term a single slot per column carries the "n_c ≥ 1" bound; the other slots
    # would cost nothing and are replaced by an unbounded slack column.
    n_slots = n_fine - n_coarse + 1 if balance_weight > 0 else 2
    n_cols = n_assign + n_coarse * n_slots

    col_cost = np.empty(n_cols)
    col_cost[:n_assign] = -cost.ravel()  # variable f * n_coarse + c is M[f, c]
    if balance_weight > 0:
        slot_cost = balance_weight * (2.0 * np.arange(1, n_slots + 1) - 1.0) / n_coarse
    else:
        slot_cost = np.zeros(n_slots)
    col_cost[n_assign:] = np.tile(slot_cost, n_coarse)

    col_lower = np.zeros(n_cols)
    col_upper = np.ones(n_cols)
    slot_lower = col_lower[n_assign:].reshape(n_coarse, n_slots)
    slot_upper = col_upper[n_assign:].reshape(n_coarse, n_slots)
    slot_lower[:, 0] = 1.0
    if balance_weight == 0:
        slot_upper[:, 1] = highspy.kHighsInf

    # Rows 0 … K_F−1: Σ_c M[f, c] = 1.  Rows K_F … K_F+K_C−1: Σ_f M[f, c] − Σ_j z[c, j] = 0.
    assign_rows = np.stack(
        [np.repeat(np.arange(n_fine), n_coarse), n_fine + np.tile(np.arange(n_coarse), n_fine)], axis=1
    ).ravel()
    slot_rows = n_fine + np.repeat(np.arange(n_coarse), n_slots)
    index = np.r_[assign_rows, slot_rows].astype(np.int32)
    value = np.r_[np.ones(2 * n_assign), -np.ones(n_coarse * n_slots)]
    starts = np.r_[np.arange(0, 2 * n_assign, 2), 2 * n_assign + np.arange(n_coarse * n_slots + 1)]

    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_fine + n_coarse
    lp.col_cost_ = col_cost
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = np.r_[np.ones(n_fine), np.zeros(n_coarse)]
    lp.row_upper_ = np.r_[np.ones(n_fine), np.zeros(n_coarse)]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    return lp


@functools.cache
def _c_library() -> ctypes.CDLL:
    """The process's C library, loaded once (a solve runs the silencing below every time)."""
    return ctypes.CDLL(None)


@contextlib.contextmanager
def _c_stdout_silenced() -> Iterator[None]:
    """Send what C code writes to standard output (file descriptor 1) to the null device for the block.

    Constructing a ``highspy.Highs`` object prints HiGHS's version and copyright banner from C++ before any
    option can turn output off, in every script, notebook and CLI run. Python's own ``sys.stdout`` is flushed
    first and is not redirected; the block lasts microseconds (only the constructor runs in it)."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        with contextlib.suppress(OSError, AttributeError):  # no C library to flush (e.g. Windows): nothing buffered
            _c_library().fflush(None)  # C stdio buffers the banner when stdout is a pipe
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def _run(lp: highspy.HighsLp, time_limit: float, integer: bool) -> np.ndarray:
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * lp.num_col_
    with _HIGHS_LOCK, _c_stdout_silenced():
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(time_limit))
    highs.setOptionValue("threads", 1)
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        reason = highs.modelStatusToString(status)
        raise RuntimeError(
            f"HiGHS did not find an optimal relationship matrix (status: {reason}, time limit "
            f"{time_limit:g} s). Increase `time_limit` if the problem is very large."
        )
    return np.asarray(highs.getSolution().col_value)


def solve_relationship(cost: np.ndarray, balance_weight: float = 0.0, *, time_limit: float = 60.0) -> np.ndarray:
    """Solve FALCON's relationship step exactly.

    Parameters
    ----------
    cost
        ``(K_F, K_C)`` array; ``cost[f, c]`` is the average predicted probability of fine class ``f`` on
        cells of coarse class ``c`` (the paper's ``C = Y_ohᵀ P / N``, transposed). Must be finite.
    balance_weight
        Weight ``w ≥ 0`` of the balance term ``Σ_c n_c² / K_C − (K_F / K_C)²`` that spreads fine classes
        evenly over coarse classes.
    time_limit
        Seconds HiGHS may spend before the solve is abandoned with a :class:`RuntimeError`.

    Returns
    -------
    ``(K_F, K_C)`` int8 array of 0/1 with exactly one 1 per row and at least one per column, minimising
    ``−Σ cost∘M + w·(Σ_c n_c² / K_C − (K_F/K_C)²)``.
    """
    cost = _validate_cost(cost, balance_weight)
    n_fine, n_coarse = cost.shape
    lp = _build_lp(cost, balance_weight)
    solution = _run(lp, time_limit, integer=False)
    assign = solution[: n_fine * n_coarse]
    if np.abs(assign - np.round(assign)).max() > _INTEGRALITY_TOL:
        solution = _run(lp, time_limit, integer=True)
        assign = solution[: n_fine * n_coarse]
    relationship = np.round(assign).reshape(n_fine, n_coarse).astype(np.int8)
    if not (np.all(relationship.sum(1) == 1) and np.all(relationship.sum(0) >= 1)):
        raise RuntimeError("HiGHS returned a relationship that violates its constraints; please report this.")
    return relationship


def relationship_objective(cost: np.ndarray, relationship: np.ndarray, balance_weight: float = 0.0) -> float:
    """Value of the objective :func:`~falcon_sc.core.solve_relationship` minimises, for a given ``relationship``."""
    cost = np.asarray(cost, dtype=np.float64)
    relationship = np.asarray(relationship)
    n_fine, n_coarse = cost.shape
    n_per_coarse = relationship.sum(0)
    balance = (n_per_coarse.astype(np.float64) ** 2).sum() / n_coarse - (n_fine / n_coarse) ** 2
    return float(-(cost * relationship).sum() + balance_weight * balance)


def solve_relationships(
    costs: Sequence[np.ndarray], balance_weight: float = 0.0, *, time_limit: float = 60.0
) -> list[np.ndarray]:
    """Solve one independent relationship per dataset, concurrently (see :func:`~falcon_sc.core.solve_relationship`)."""
    if len(costs) <= 1:
        return [solve_relationship(c, balance_weight, time_limit=time_limit) for c in costs]
    with ThreadPoolExecutor(max_workers=min(len(costs), 8)) as pool:
        futures = [pool.submit(solve_relationship, c, balance_weight, time_limit=time_limit) for c in costs]
        return [f.result() for f in futures]
