"""The falcon-sc command line: one discover run through a subprocess, as a user runs it; the other commands and
the error cases in-process (``cli.main``), which saves an interpreter start-up per case."""

import json
import os
import shutil
import subprocess
import sys

import anndata as ad
import conftest
import numpy as np
import pytest
import scanpy as sc

import falcon_sc as fs

# the installed console script; a source checkout without an install runs the module instead
COMMAND = [shutil.which("falcon-sc")] if shutil.which("falcon-sc") else [sys.executable, "-m", "falcon_sc.cli"]
FAST = ["--n-top-genes", "200", "--device", "cpu", *conftest.FAST_OPTIONS]


def falcon_sc(*args, cwd):
    env = os.environ | {"MPLBACKEND": "Agg"}
    return subprocess.run(
        [*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, umask=0o022
    )


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """``cli.main`` in-process, from directory ``cwd``: the exit code and what it printed."""
    from types import SimpleNamespace

    from falcon_sc import cli

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exit_:  # argparse: --help, or an argument it refuses
            code = exit_.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


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
    assert (
        out.uns["falcon"]["params"]["config"]["min_total_steps"] == conftest.FAST["min_total_steps"]
    )  # --option reached it
    model = fs.FalconModel.load(root / "model")
    assert model.fine_names == list(out.obs["falcon"].cat.categories)
    assert (root / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote out.h5ad" in done.stderr and "model saved to model" in done.stderr
    assert "wrote the relationship graph to graph.png" in done.stderr
    assert "HiGHS" not in done.stdout + done.stderr and "Warning" not in done.stderr
    assert leftovers(root) == []


def test_outputs_are_readable_as_a_plain_write_would_make_them(workdir):
    """Outputs are renamed from private temporary files; they must end with the umask's modes (issue 18)."""
    root, _ = workdir
    mode = {p.name: p.stat().st_mode & 0o777 for p in [root / "out.h5ad", root / "graph.png", root / "model"]}
    mode |= {p.name: p.stat().st_mode & 0o777 for p in (root / "model").iterdir()}
    assert mode == {
        "out.h5ad": 0o644, "graph.png": 0o644, "model": 0o755, "model.json": 0o644, "weights.safetensors": 0o644,
    }  # fmt: skip


def test_h5ad_outputs_are_compressed_unless_asked(workdir, tmp_path, run_cli):
    import h5py

    root, _ = workdir
    with h5py.File(root / "out.h5ad") as f:
        assert f["obsm/falcon_probs"].compression == "gzip"
    done = run_cli("predict", "model", "in.h5ad", "-o", tmp_path / "plain.h5ad", "--no-compression", cwd=root)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "plain.h5ad") as f:
        assert f["obsm/falcon_probs"].compression is None


def test_quiet_discover_prints_nothing(workdir, tmp_path, capfd):
    from falcon_sc import cli

    root, _ = workdir
    args = ["discover", str(root / "in.h5ad"), "-o", str(tmp_path / "q.h5ad"), "--coarse-key", "coarse"]
    verbosity = sc.settings.verbosity
    assert cli.main([*args, "--n-fine", "6", "--quiet", *FAST, "--plot", str(tmp_path / "q.png")]) == 0
    assert capfd.readouterr() == ("", "")
    assert sc.settings.verbosity == verbosity  # restored for the caller
    assert (tmp_path / "q.h5ad").is_file() and (tmp_path / "q.png").is_file()


def test_a_warning_is_one_line_without_source(workdir, tmp_path, run_cli):
    root, _ = workdir
    adata = ad.read_h5ad(root / "in.h5ad")
    adata[:, 40:].copy().write_h5ad(tmp_path / "fewer.h5ad")
    done = run_cli("predict", root / "model", "fewer.h5ad", "-o", "p.h5ad", "--coarse-key", "coarse", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if "missing" in line]
    assert len(warning) == 1 and warning[0].startswith("falcon-sc: warning: ") and "genes are missing" in warning[0]
    assert "predict(" not in done.stderr and "UserWarning" not in done.stderr


def test_info_offers_no_output_options(run_cli, tmp_path):
    done = run_cli("info", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--quiet" in done.stdout
    assert "--force" not in done.stdout and "--no-compression" not in done.stdout


def test_predict_and_info(workdir, run_cli):
    root, _ = workdir
    done = run_cli("predict", "model", "in.h5ad", "-o", "pred.h5ad", "--coarse-key", "coarse", cwd=root)
    assert done.returncode == 0, done.stderr
    predicted, out = ad.read_h5ad(root / "pred.h5ad"), ad.read_h5ad(root / "out.h5ad")
    np.testing.assert_array_equal(predicted.obs["falcon"].to_numpy(), out.obs["falcon"].to_numpy())

    info = run_cli("info", "model", cwd=root)
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith("FalconModel(6 fine classes under 3 coarse classes, 200 genes, counts input)")
    assert "coarse_key='coarse', n_fine=6" in info.stdout and "C0/0 → C0" in info.stdout
    described = json.loads(run_cli("info", "model", "--json", cwd=root).stdout)
    assert described["fine_names"] == list(out.obs["falcon"].cat.categories) and len(described["genes"]) == 200


def test_existing_outputs_are_kept_unless_forced(workdir, run_cli):
    root, _ = workdir
    before = (root / "out.h5ad").stat().st_mtime_ns
    done = run_cli("discover", "in.h5ad", "-o", "out.h5ad", "--coarse-key", "coarse", "--n-fine", "6", cwd=root)
    assert done.returncode == 3
    assert done.stderr.strip() == "falcon-sc: error: output exists: out.h5ad; pass --force to replace it."
    assert (root / "out.h5ad").stat().st_mtime_ns == before
    done = run_cli("predict", "model", "in.h5ad", "-o", "out.h5ad", "--force", "--quiet", cwd=root)
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
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "coarse", "--n-fine", "many"], 2, "JSON object"),
        (["discover", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "coarse", "--n-fine", "4", "--option", "bogus=1"],
         2, "Unknown FALCON option"),
        # checked before the (here missing) input is read: the option is named with what it expects
        (["discover", "missing.h5ad", "-o", "x.h5ad", "--coarse-key", "c", "--n-fine", "4", "--option", "epochs=abc"],
         2, "Option epochs expects an integer; got 'abc'"),
        (["discover", "missing.h5ad", "-o", "x.h5ad", "--coarse-key", "c", "--n-fine", "4", "--option", "lr=-1"],
         2, "Option lr=-1.0 is out of range"),
        (["discover", "model/model.json", "-o", "x.h5ad", "--coarse-key", "c", "--n-fine", "4"], 2, "not a readable"),
        (["predict", "nowhere", "in.h5ad", "-o", "x.h5ad"], 2, "model.json not found"),
        (["predict", "model", "in.h5ad", "-o", "x.h5ad", "--coarse-key", "fine"], 2, "unknown to the model"),
        (["info"], 2, "required: MODEL_DIR"),
    ],
)  # fmt: skip
def test_errors_exit_with_a_code_and_one_line_without_traceback(workdir, args, code, message, run_cli):
    root, _ = workdir
    done = run_cli(*args, cwd=root)
    assert done.returncode == code
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (root / "x.h5ad").exists() and leftovers(root) == []


def test_a_tampered_model_is_refused_and_debug_shows_the_traceback(workdir, tmp_path, run_cli):
    root, _ = workdir
    shutil.copytree(root / "model", tmp_path / "model")
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    done = run_cli("info", "model", cwd=tmp_path)
    assert done.returncode == 2 and "do not match their checksum" in done.stderr and "Traceback" not in done.stderr
    from falcon_sc import ModelFileError

    with pytest.raises(ModelFileError, match="checksum"):  # --debug: the exception itself, traceback and all
        run_cli("info", "model", "--debug", cwd=tmp_path)


def test_every_option_of_discover_subtypes_has_a_flag():
    """The command line cannot drift from the function: each keyword option is a flag of the same name, or one of
    the few the CLI takes another way (named in cli.DISCOVER_FLAGS's comment)."""
    import argparse
    import inspect

    from falcon_sc import cli

    parameters = inspect.signature(fs.tl.discover_subtypes).parameters
    options = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    taken_otherwise = {"dataset_key": "--dataset-key", "preset": "--preset", "progress": "--quiet"}
    taken_otherwise |= {"return_model": "--save-model", "copy": "--output"}
    assert options - set(taken_otherwise) == set(cli.DISCOVER_FLAGS)
    subcommands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {flag for action in subcommands.choices["discover"]._actions for flag in action.option_strings}
    missing = [
        f"--{name.replace('_', '-')}" for name in cli.DISCOVER_FLAGS if f"--{name.replace('_', '-')}" not in flags
    ]
    assert not missing and set(taken_otherwise.values()) <= flags


def test_discover_flags_reach_the_run(workdir, tmp_path, run_cli):
    root, _ = workdir
    source = ad.read_h5ad(root / "in.h5ad")
    counts = {str(c): 2 for c in source.obs["coarse"].cat.categories}
    done = run_cli(
        "discover", root / "in.h5ad", "-o", tmp_path / "flags.h5ad", "--coarse-key", "coarse",
        "--n-fine", json.dumps(counts), "--total-counts-feature", "false", "--target-sum", "10000",
        "--merge-unsupported", "--sample-key", "coarse", *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    params = ad.read_h5ad(tmp_path / "flags.h5ad").uns["falcon"]["params"]
    assert params["fine_fixed"] and params["n_fine"] == sum(counts.values())
    assert not params["total_counts_feature"] and params["target_sum"] == 10000 and params["normalize_total"] == 10000
    assert params["sample_key"] == "coarse" and "merged" in params
    refused = run_cli(
        "discover", root / "in.h5ad", "-o", tmp_path / "x.h5ad", "--coarse-key", "coarse", "--n-fine", "6",
        "--n-fine-range", "3", "9", *FAST, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "n_fine_range bounds the estimate" in refused.stderr
    for bad in ("--target-sum", "--total-counts-feature"):
        wrong = run_cli("discover", root / "in.h5ad", "-o", tmp_path / "y.h5ad", "--coarse-key", "coarse",
                        "--n-fine", "6", bad, "maybe", cwd=tmp_path)  # fmt: skip
        assert wrong.returncode == 2 and 'expected "auto"' in wrong.stderr
