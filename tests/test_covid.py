"""The COVID challenge loader, on a stand-in with the real file's schema (the real file is not reachable)."""

import functools
import http.server
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import scanpy as sc

import falcon_sc as fs

sys.path.insert(0, str(Path(__file__).parent))
from covid_standin import write_covid_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("covid") / "challenge_pbmc_cellxgene_230223.h5ad"
    write_covid_standin(path)
    return path


def test_reads_a_local_file_with_counts_in_a_layer(standin):
    adata = fs.datasets.pbmc_covid_challenge(standin)
    assert {"cell_state", "cell_type", "cell_compartment", "patient_id"} <= set(adata.obs)
    counts = adata.layers["counts"].toarray()
    assert np.all(counts == np.round(counts)) and counts.sum() > 0  # raw counts, X stays normalised
    assert not np.all(adata.X.toarray() == np.round(adata.X.toarray()))
    backed = fs.datasets.pbmc_covid_challenge(standin, backed=True)
    assert backed.isbacked and "counts" not in backed.layers


def test_downloads_with_pooch_into_scanpys_dataset_dir(standin, tmp_path, monkeypatch):
    # Serve the stand-in over HTTP on localhost and point the loader at it: the real download code runs.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(standin.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{standin.name}"
    monkeypatch.setattr("falcon_sc.datasets._covid.COVID_CHALLENGE_URL", url)
    datasetdir = sc.settings.datasetdir  # a settings property monkeypatch cannot restore
    sc.settings.datasetdir = tmp_path / "data"
    try:
        adata = fs.datasets.pbmc_covid_challenge(progress=False)
        server.shutdown()
        again = fs.datasets.pbmc_covid_challenge(progress=False)  # cached: no server needed any more
    finally:
        server.shutdown()
        sc.settings.datasetdir = datasetdir
    assert (tmp_path / "data" / standin.name).exists()
    assert adata.n_obs == again.n_obs == 800


def test_refuses_files_of_another_schema(tmp_path):
    other = fs.datasets.simulate_hierarchy(100, 50, 2, 3, random_state=0)
    other.write_h5ad(tmp_path / "other.h5ad")
    with pytest.raises(ValueError, match=r"lacks obs columns \['cell_state', 'cell_type'"):
        fs.datasets.pbmc_covid_challenge(tmp_path / "other.h5ad")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fs.datasets.pbmc_covid_challenge(tmp_path / "missing.h5ad")
