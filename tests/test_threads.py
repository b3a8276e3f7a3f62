"""Training runs on one CPU thread, PCA and neighbours on n_jobs (one thread for small data unless given), and the
caller's settings come back."""

import pytest
import torch

import falcon_sc as fs
from falcon_sc.core import pipeline, threads
from falcon_sc.core.threads import cpu_threads, resolve_n_jobs


def test_stages_use_their_thread_counts_and_the_callers_setting_is_restored(small, monkeypatch):
    seen = {}
    train, neighbors = pipeline.train_falcon, pipeline.training_neighbors

    def recording_train(*args, **kwargs):
        seen.setdefault("training", set()).add(torch.get_num_threads())
        return train(*args, **kwargs)

    def recording_neighbors(*args, **kwargs):
        seen["neighbors"] = torch.get_num_threads()
        return neighbors(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_falcon", recording_train)
    monkeypatch.setattr(pipeline, "training_neighbors", recording_neighbors)
    adata = small
    before = torch.get_num_threads()
    # a short single run: the thread counts are the point, not the result
    options = dict(n_top_genes=100, min_total_steps=20, n_restarts=1, progress=False)
    try:
        torch.set_num_threads(2)
        fs.tl.discover_subtypes(adata, "coarse", n_fine=5, **options)  # 300 cells: too few for threads to pay
        assert seen == {"training": {1}, "neighbors": 1} and torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "PARALLEL_MIN_CELLS", 300)  # as many cells as the data: torch's setting
        fs.tl.discover_subtypes(adata, "coarse", n_fine=5, **options)
        assert seen == {"training": {1}, "neighbors": 2} and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        fs.tl.discover_subtypes(adata, "coarse", n_fine=5, n_jobs=2, **options)
        assert seen == {"training": {1}, "neighbors": 2} and torch.get_num_threads() == 1
        assert adata.uns["falcon"]["params"]["n_jobs"] == 2
        fs.tl.discover_subtypes(adata, "coarse", n_fine=5, n_jobs=2, training_threads=2, **options)
        assert seen == {"training": {1, 2}, "neighbors": 2} and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_are_restored_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_n_jobs_values():
    assert resolve_n_jobs(None) is None and resolve_n_jobs(2) == 2 and resolve_n_jobs(-1) >= 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_jobs must be"):
            resolve_n_jobs(bad)
