"""The falcon-sc command line, end to end through a subprocess as a user runs it."""

import json
import os
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

import falcon_sc as fs

# the installed console script; a source checkout without an install runs the module instead
COMMAND = [shutil.which("falcon-sc")] if shutil.which("falcon-sc") else [sys.executable, "-m", "falcon_sc.cli"]
FAST = ["--n-top-genes", "200", "--device", "cpu", "--option", "min_total_steps=300", "--option", "n_restarts=1"]


def falcon_sc(*args, cwd):
    env = os.environ | {"MPLBACKEND": "Agg"}
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A discover run through the CLI: input, output, saved model and graph in one directory."""
    root = tmp_path_factory.mktemp("cli")
    adata = fs.datasets.simulate_hierarchy(500, 300, 3, 6, fine_separation=2.0, random_state=5)
    adata.write_h5ad(root / "in.h5ad")
    done = falcon_sc(
        "discover", "in.h5ad", "-o", "out.h5ad", "--coarse-key", "coarse", "--n-fine", "6",
        "--save-model", "model", "--plot", "graph.png", *FAST, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root, done


def leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_discover_writes_the_outputs_model_and_plot(workdir):
    root, done = workdir
    out = ad.read_h5ad(root / "out.h5ad")
    assert out.obs["falcon"].cat.categories.size == 6 and out.uns["falcon"]["params"]["n_fine"] == 6
    assert out.uns["falcon"]["params"]["config"]["min_total_steps"] == 300  # --option reached the config
    model = fs.FalconModel.load(root / "model")
    assert model.fine_names == list(out.obs["falcon"].cat.categories)
    assert (root / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote out.h5ad" in done.stderr and "model saved to model" in done.stderr
    assert leftovers(root) == []


def test_predict_and_info(workdir):
    root, _ = workdir
    done = falcon_sc("predict", "model", "in.h5ad", "-o", "pred.h5ad", "--coarse-key", "coarse", cwd=root)
    assert done.returncode == 0, done.stderr
    predicted, out = ad.read_h5ad(root / "pred.h5ad"), ad.read_h5ad(root / "out.h5ad")
    np.testing.assert_array_equal(predicted.obs["falcon"].to_numpy(), out.obs["falcon"].to_numpy())

    info = falcon_sc("info", "model", cwd=root)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith("FalconModel(6 fine classes under 3 coarse classes, 200 genes, counts input)")
    assert "coarse_key='coarse', n_fine=6" in info.stdout and "C0/0 → C0" in info.stdout
    described = json.loads(falcon_sc("info", "model", "--json", cwd=root).stdout)
    assert described["fine_names"] == list(out.obs["falcon"].cat.categories) and len(described["genes"]) == 200


def test_existing_outputs_are_kept_unless_forced(workdir):
    root, _ = workdir
    before = (root / "out.h5ad").stat().st_mtime_ns
    done = falcon_sc("discover", "in.h5ad", "-o", "out.h5ad", "--coarse-key", "coarse", "--n-fine", "6", cwd=root)
    assert done.returncode == 3
    assert done.stderr.strip() == "falcon-sc: error: output exists: out.h5ad; pass --force to replace it."
    assert (root / "out.h5ad").stat().st_mtime_ns == before
    done = falcon_sc("predict", "model", "in.h5ad", "-o", "out.h5ad", "--force", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    assert (root / "out.h5ad").stat().st_mtime_ns != before
    assert ad.read_h5ad(root / "out.h5ad").uns["falcon"]["params"]["method"] == "transfer"
    assert leftovers(root) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["discover", "missing.h5ad", "-o", "x.h5ad", "--coarse-key", "c", "--n-fine", "4"], 2, "h5ad not found"),
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "cell_type", "--n-fine", "4"], 2, "not a column"),
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "coarse", "--n-fine", "2"], 2, "smaller than the 3"),
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "coarse", "--n-fine", "many"], 2, "integer or"),
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "coarse", "--n-fine", "4", "--option", "bogus=1"],
         2, "Unknown FALCON option"),
        (["discover", "model/model.json", "-o", "x.h5ad", "--coarse-key", "c", "--n-fine", "4"], 2, "not a readable"),
        (["predict", "nowhere", "in.h5ad", "-o", "x.h5ad"], 2, "model.json not found"),
        (["predict", "model", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "fine"], 2, "unknown to the model"),
        (["info"], 2, "required: MODEL_DIR"),
    ],
)  # fmt: skip
def test_errors_exit_with_a_code_and_one_line_without_traceback(workdir, args, code, message):
    root, _ = workdir
    done = falcon_sc(*args, cwd=root)
    assert done.returncode == code
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (root / "x.h5ad").exists() and leftovers(root) == []


def test_a_tampered_model_is_refused_and_debug_shows_the_traceback(workdir, tmp_path):
    root, _ = workdir
    shutil.copytree(root / "model", tmp_path / "model")
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    done = falcon_sc("info", "model", cwd=tmp_path)
    assert done.returncode == 2 and "do not match their checksum" in done.stderr and "Traceback" not in done.stderr
    debug = falcon_sc("info", "model", "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelFileError" in debug.stderr
