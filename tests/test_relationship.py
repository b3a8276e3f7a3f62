import itertools

import numpy as np
import pytest

from falcon_sc.core import proportional_relationship, relationship_objective, solve_relationship, solve_relationships


def brute_force_optimum(cost: np.ndarray, weight: float) -> float:
    n_fine, n_coarse = cost.shape
    best = np.inf
    for parents in itertools.product(range(n_coarse), repeat=n_fine):
        if len(set(parents)) < n_coarse:
            continue
        m = np.zeros((n_fine, n_coarse), dtype=int)
        m[np.arange(n_fine), parents] = 1
        best = min(best, relationship_objective(cost, m, weight))
    return best


def check_constraints(m: np.ndarray, shape) -> None:
    assert m.shape == shape
    assert set(np.unique(m)) <= {0, 1}
    assert np.all(m.sum(1) == 1)
    assert np.all(m.sum(0) >= 1)


@pytest.mark.parametrize("weight", [0.0, 0.005, 0.3, 5.0])
def test_solver_matches_brute_force(weight):
    rng = np.random.default_rng(int(weight * 1000))
    for trial in range(80):
        n_coarse = int(rng.integers(1, 4))
        n_fine = int(rng.integers(n_coarse, 7))
        cost = rng.random((n_fine, n_coarse))
        if trial % 3 == 0:  # many ties
            cost = np.round(cost * 2) / 2
        m = solve_relationship(cost, weight)
        check_constraints(m, cost.shape)
        assert relationship_objective(cost, m, weight) == pytest.approx(brute_force_optimum(cost, weight), abs=1e-9)


def test_all_equal_costs_still_feasible():
    m = solve_relationship(np.zeros((5, 3)), 0.0)
    check_constraints(m, (5, 3))


def test_balance_weight_spreads_fine_classes():
    # Every fine class prefers coarse class 0 slightly; a large balance weight must spread them evenly.
    cost = np.column_stack([np.full(6, 0.2), np.full(6, 0.1), np.full(6, 0.1)])
    assert solve_relationship(cost, 0.0).sum(0).tolist() == [4, 1, 1]
    assert solve_relationship(cost, 10.0).sum(0).tolist() == [2, 2, 2]


def test_objective_includes_balance_constant():
    cost = np.eye(3)
    m = np.eye(3, dtype=int)
    assert relationship_objective(cost, m, 1.0) == pytest.approx(-3.0)  # balanced: Σ n²/K_C − (K_F/K_C)² = 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_cost(bad):
    cost = np.ones((4, 2))
    cost[1, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        solve_relationship(cost)


def test_rejects_fewer_fine_than_coarse():
    with pytest.raises(ValueError, match="at least as many fine classes"):
        solve_relationship(np.ones((2, 3)))


def test_rejects_bad_balance_weight():
    with pytest.raises(ValueError, match="balance_weight"):
        solve_relationship(np.ones((3, 2)), -1.0)


def test_large_instances_are_feasible():
    rng = np.random.default_rng(0)
    for shape in [(83, 27), (608, 34)]:
        m = solve_relationship(rng.random(shape), 0.005)
        check_constraints(m, shape)


def test_multi_dataset_form_solves_each_independently():
    rng = np.random.default_rng(1)
    costs = [rng.random((5, 2)), rng.random((6, 3)), rng.random((4, 4))]
    together = solve_relationships(costs, 0.1)
    for cost, m in zip(costs, together, strict=True):
        assert relationship_objective(cost, m, 0.1) == pytest.approx(brute_force_optimum(cost, 0.1), abs=1e-9)


def test_proportional_initial_relationship_starts_from_a_given_allocation():
    sizes = np.array([100, 800, 100])
    np.testing.assert_array_equal(proportional_relationship(sizes, 6).sum(0), [1, 4, 1])
    # base first, then the 2 remaining classes by size (largest remainder: 0.2, 1.6, 0.2 → 0, 2, 0)
    np.testing.assert_array_equal(proportional_relationship(sizes, 6, base=np.array([2, 1, 1])).sum(0), [2, 3, 1])
    np.testing.assert_array_equal(proportional_relationship(sizes, 5, base=np.array([2, 2, 1])).sum(0), [2, 2, 1])
    # a base that does not fit (too many classes, or a coarse class without any) falls back to one each
    for base in ([3, 3, 1], [0, 5, 1]):
        np.testing.assert_array_equal(proportional_relationship(sizes, 6, base=np.array(base)).sum(0), [1, 4, 1])
    m = proportional_relationship(sizes, 6, base=np.array([2, 1, 1]))
    assert m.shape == (6, 3) and (m.sum(1) == 1).all()


def test_the_solver_prints_nothing():
    """HiGHS prints a banner from C++ when a solver is constructed (issue 18); nothing may reach stdout."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from falcon_sc.core.relationship import solve_relationship; "
        "print(solve_relationship(np.random.default_rng(0).random((5, 2))).sum(0).tolist())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[3, 2]\n" or done.stdout == "[2, 3]\n", done.stdout
    assert "HiGHS" not in done.stderr
