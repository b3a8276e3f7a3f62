"""The README and the docs: short where users read first, and every headline figure taken from bench/results."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_and_changelog_stay_short_and_the_notebook_is_linked():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200 and len(readme.encode()) <= 15_000
    assert len((ROOT / "CHANGELOG.md").read_text().encode()) <= 10_000
    assert "\nnotes\n" in (ROOT / "docs" / "index.md").read_text()
    # every relative link of the README points to a file of the repository
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", readme):
        assert (ROOT / target).exists(), target


def accuracy_rows() -> dict[tuple[str, str], str]:
    """``(dataset, method) → "ACC / ARI"`` of ``bench/results/accuracy_cpu.md``'s main table."""
    rows = {}
    for line in (ROOT / "bench" / "results" / "accuracy_cpu.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 4 and " ± " in cells[2]:
            rows.setdefault((cells[0], cells[1]), f"{cells[2].split(' ± ')[0]} / {cells[3].split(' ± ')[0]}")
    return rows


README_DATASETS = {
    "pbmc3k, whole transcriptome": "pbmc3k",
    "pbmc3k as a 300-gene panel": "pbmc3k-panel-300",
    "pbmc3k as a 100-gene panel": "pbmc3k-panel-100",
    "pbmc3k as a 40-gene panel": "pbmc3k-panel-40",
    "Zeisel mouse cortex, 200 genes": "zeisel",
    "pbmc68k_reduced": "pbmc68k",
}
BASELINES = {"k-means per class": "k-means per class, proportional K", "coarse labels": "coarse labels alone"}


@pytest.mark.parametrize("readme_name", README_DATASETS)
def test_readme_results_are_those_of_the_benchmark_file(readme_name):
    rows = accuracy_rows()
    dataset = README_DATASETS[readme_name]
    line = next(li for li in (ROOT / "README.md").read_text().splitlines() if li.startswith(f"| {readme_name} |"))
    cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
    falcon, best, coarse, ceiling = cells[2:6]
    assert falcon == rows[dataset, "FALCON"]
    assert coarse == rows[dataset, "coarse labels alone"]
    assert ceiling == rows[dataset, "supervised ceiling (fine labels, CV)"]
    value, method = re.fullmatch(r"(.+) \((.+)\)", best).groups()
    assert value == rows[dataset, BASELINES[method]]
