"""Run by tests/test_distributed.py under torchrun: discover_subtypes with one gloo process per rank.

Usage: torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT.npz
"""

import sys

import numpy as np
import torch.distributed as dist

import falcon_sc as fs
from falcon_sc.core import distributed

# Small data and schedule shared with the single-process reference in the test.
SIMULATION = dict(n_cells=600, n_genes=200, n_coarse=3, n_fine=6, random_state=3)
OPTIONS = dict(
    n_fine=6, n_top_genes=200, random_state=0, device="cpu", progress=False, min_total_steps=200, n_restarts=1
)


def run():
    adata = fs.datasets.simulate_hierarchy(**SIMULATION)
    fs.tl.discover_subtypes(adata, "coarse", **OPTIONS)
    return adata


if __name__ == "__main__":
    dist.init_process_group("gloo")
    adata = run()
    rank, world_size = distributed.world()
    if rank == 0:
        u = adata.uns["falcon"]
        np.savez(
            sys.argv[1],
            world_size=world_size,
            labels=adata.obs["falcon"].astype(str).to_numpy(),
            probs=adata.obsm["falcon_probs"],
            relationship=u["relationship_matrix"],
            total=u["history"]["total"],
        )
    dist.destroy_process_group()
