"""Time the exact relationship solve (M-step) at the paper's problem sizes.

    python bench/solver.py [--repeats 20]

Prints median and worst wall time of ``solve_relationship`` on random costs for PBMC COVID (83 fine,
27 coarse) and tieredImageNet (608 fine, 34 coarse), with and without the balance term.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from falcon_sc.core import solve_relationship


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    solve_relationship(rng.random((10, 3)))  # warm-up: loads HiGHS
    print("| K_F | K_C | balance weight | median (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    for n_fine, n_coarse in [(83, 27), (608, 34)]:
        for weight in (0.0, 0.005):
            times = []
            for _ in range(args.repeats):
                cost = rng.dirichlet(np.ones(n_fine), size=n_coarse).T / n_coarse
                start = time.perf_counter()
                solve_relationship(cost, weight)
                times.append(1000 * (time.perf_counter() - start))
            print(f"| {n_fine} | {n_coarse} | {weight} | {np.median(times):.1f} | {np.max(times):.1f} |")


if __name__ == "__main__":
    main()
