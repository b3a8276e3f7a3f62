from __future__ import annotations

from pathlib import Path

import anndata as ad
import scanpy as sc

#: The cellxgene release of the SARS-CoV-2 human challenge PBMC data (Lindeboom et al. 2023), used in the
#: FALCON paper's single-cell experiments.
COVID_CHALLENGE_URL = "https://covid19.cog.sanger.ac.uk/challenge_pbmc_cellxgene_230223.h5ad"
COVID_CHALLENGE_COLUMNS = ("cell_state", "cell_type", "cell_compartment", "patient_id")


def pbmc_covid_challenge(path: str | Path | None = None, *, backed: bool = False, progress: bool = True) -> ad.AnnData:
    """PBMCs from the SARS-CoV-2 human challenge study (Lindeboom et al. 2023), the paper's dataset.

    ``obs`` holds ``cell_type`` (coarse, 27 classes), ``cell_state`` (fine, 83), ``cell_compartment`` and
    ``patient_id``. cellxgene stores normalised values in ``X`` and raw counts in ``raw.X``; the counts are
    returned in ``layers["counts"]`` (pass ``layer="counts"`` to discover_subtypes, as the paper's seurat_v3
    HVGs need counts).

    Parameters
    ----------
    path
        A local copy of the file. ``None`` downloads it once (several GB, with a progress bar) into
        ``scanpy.settings.datasetdir`` with pooch and reuses it afterwards.
    backed
        Open the file backed (``"r"``) instead of loading it; ``layers["counts"]`` is then not added (use
        ``adata.raw`` or load it into memory).
    progress
        Show a download progress bar.

    Raises
    ------
    ValueError
        If the file lacks one of the expected ``obs`` columns.
    """
    if path is None:
        # imported here: pooch imports tqdm.auto, which warns in a notebook without ipywidgets
        import pooch

        path = pooch.retrieve(
            COVID_CHALLENGE_URL,
            known_hash=None,
            fname=COVID_CHALLENGE_URL.rsplit("/", 1)[1],
            path=Path(sc.settings.datasetdir),
            progressbar=progress,
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass the downloaded file's path or path=None to download it.")
    adata = sc.read_h5ad(path, backed="r" if backed else None)
    missing = [c for c in COVID_CHALLENGE_COLUMNS if c not in adata.obs]
    if missing:
        raise ValueError(
            f"{path} lacks obs columns {missing} of the COVID challenge schema {list(COVID_CHALLENGE_COLUMNS)}; "
            "is it the file from " + COVID_CHALLENGE_URL + "?"
        )
    has_raw_counts = adata.raw is not None and adata.var_names.isin(adata.raw.var_names).all()
    if not backed and has_raw_counts and "counts" not in adata.layers:
        adata.layers["counts"] = adata.raw[:, adata.var_names].X.copy()
    return adata
