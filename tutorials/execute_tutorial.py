"""Execute a tutorial notebook in place, as CI checks it: ``python tutorials/execute_tutorial.py quickstart.ipynb``.

Training sums floats in an order that depends on the CPU's vector instructions (AVX2 or AVX-512) and on the
number of threads, so the same ``random_state`` can give other labels on another machine. The kernel therefore
runs on one thread with the AVX2 code paths of torch (ATen), MKL and OpenBLAS, so that the committed outputs do not
depend on whether the CPU has AVX-512 or on its number of cores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent

#: Environment of the notebook kernel: one thread, AVX2 code paths.
PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def execute(name: str, env: dict[str, str] | None = None, timeout: int = 600) -> nbformat.NotebookNode:
    """Execute ``tutorials/<name>`` with :data:`PINNED_ENVIRONMENT` (and ``env``) in its kernel; returns it."""
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    kernel_env = {**os.environ, **PINNED_ENVIRONMENT, **(env or {})}  # this process's own stays as it is
    resources = {"metadata": {"path": TUTORIALS}}
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources=resources).execute(env=kernel_env)
    return notebook


if __name__ == "__main__":
    for name in sys.argv[1:]:
        nbformat.write(execute(name), TUTORIALS / name)
        print(f"executed {TUTORIALS / name}")
