"""The tutorials execute from top to bottom (nbclient), the COVID one on a stand-in with the real schema."""

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).parent))
from covid_standin import write_covid_standin

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def execute(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": TUTORIALS}}).execute()
    return notebook


def outputs_text(notebook) -> str:
    return "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


@pytest.mark.slow
def test_quickstart_runs_and_its_committed_copy_has_outputs(monkeypatch):
    monkeypatch.delenv("FALCON_SC_PBMC3K", raising=False)
    executed = execute("quickstart.ipynb", {}, monkeypatch)
    committed = nbformat.read(TUTORIALS / "quickstart.ipynb", as_version=4)
    # the committed outputs must be what the code gives now: every score it prints, and nothing unwanted
    fresh, stored = outputs_text(executed), outputs_text(committed)
    scores = re.compile(r"(ACC|ARI|GED) ([\d.]+)")
    assert scores.findall(fresh) and scores.findall(fresh) == scores.findall(stored)
    for unwanted in ("HiGHS", "Warning", "warn("):
        assert unwanted not in stored, unwanted
    images = [
        o for c in committed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 5  # relationship graph, subtypes, markers, confusion, history


@pytest.mark.slow
def test_covid_tutorial_runs_on_a_standin_and_is_committed_without_outputs(tmp_path, monkeypatch):
    path = tmp_path / "standin.h5ad"
    write_covid_standin(path)
    executed = execute("pbmc_covid.ipynb", {"FALCON_SC_COVID_PATH": str(path)}, monkeypatch)
    text = outputs_text(executed)
    assert "falcon_sc: ACC" in text and "paper (FALCON): ACC 75.8" in text
    committed = nbformat.read(TUTORIALS / "pbmc_covid.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code")
