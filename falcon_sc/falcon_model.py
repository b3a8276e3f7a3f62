"""A trained FALCON model: save it, load it, and transfer its fine classes to new cells.

On disk a model is a directory with two files: ``weights.safetensors`` (every tensor: the classifier network
and its input projection; the safetensors format holds raw arrays, so loading runs no code) and
``model.json`` (genes, class names, relationships, preprocessing, hyperparameters, package versions, and the
SHA-256 of the weights file and of the metadata). Loading checks both digests, so a truncated, corrupted or
edited file is refused; they guard integrity, not authenticity (anyone can recompute them).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from scanpy import logging as logg

from ._adata.device import resolve_device
from ._adata.labels import checked_labels
from ._adata.outputs import Outputs, h5ad_safe, relationship_view, write_outputs
from ._adata.preprocess import TARGET_SUM, prepare_embedding, prepare_genes
from ._docs import PREDICT_DOCS, doc_params
from ._files import plain_permissions
from ._version import __version__
from .core.classifier import FineClassifier, within_coarse

FORMAT = "falcon_sc.model"
#: Version of the on-disk layout; a model saved in a newer format is refused.
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
METADATA_FILE = "model.json"


class ModelFileError(ValueError):
    """A saved model that cannot be trusted or read: missing, truncated, edited, or from a newer format."""


class FalconModel:
    """The fine classifier a :func:`~falcon_sc.tl.discover_subtypes` run trained, with what it takes to use it
    on new cells: the genes it reads and their preprocessing, the fine and coarse class names, and the learned
    relationship M (one per dataset for a run on several datasets).

    Get one with ``discover_subtypes(..., return_model=True)`` or :meth:`load`; apply it with :meth:`predict`.
    """

    def __init__(
        self,
        classifier: FineClassifier,
        *,
        genes: Sequence[str],
        fine_names: Sequence[str],
        relationships: Sequence[dict[str, Any]],
        preprocessing: dict[str, Any],
        training: dict[str, Any],
        versions: dict[str, str] | None = None,
        saved: str | None = None,
    ):
        self.classifier = classifier
        self.genes = pd.Index([str(g) for g in genes])
        self.fine_names = [str(f) for f in fine_names]
        # [{"dataset": name or None, "coarse_names": [...], "parents": [coarse index of every fine class]}]
        self.relationships = [
            {
                "dataset": r["dataset"],
                "coarse_names": [str(c) for c in r["coarse_names"]],
                "parents": list(r["parents"]),
            }
            for r in relationships
        ]
        self.preprocessing = dict(preprocessing)
        self.training = dict(training)
        self.versions = dict(versions or {"falcon_sc": __version__, "torch": torch.__version__})
        self.saved = saved  # when the model was last saved (ISO 8601, UTC), if it was
        n_features = len(self.genes) + self.reads_total_counts
        if classifier.n_inputs != n_features or classifier.n_outputs != len(self.fine_names):
            raise ValueError(
                f"The classifier reads {classifier.n_inputs} features and predicts {classifier.n_outputs} classes, "
                f"but the model lists {n_features} features ({len(self.genes)} genes"
                f"{' + total counts' if self.reads_total_counts else ''}) and {len(self.fine_names)} fine classes."
            )

    @property
    def use_rep(self) -> str | None:
        """The key of ``adata.obsm`` the model reads instead of genes (None: genes)."""
        return self.preprocessing.get("use_rep")

    @property
    def target_sum(self) -> float:
        """The per-cell total that counts are normalised to, as in training (for a model trained on
        log-normalised input, the conventional 10,000 its input is assumed to have)."""
        return float(self.preprocessing.get("normalize_total") or TARGET_SUM)

    @property
    def reads_total_counts(self) -> bool:
        """Whether each cell's log1p(total counts) is an input after the genes (targeted panels)."""
        return bool(self.preprocessing.get("total_counts_feature", False))

    # ----------------------------------------------------------------------------------------------- views
    @property
    def datasets(self) -> list[str | None]:
        """Names of the datasets the model has a relationship for (``[None]`` for a single dataset)."""
        return [r["dataset"] for r in self.relationships]

    def relationship(self, dataset: str | None = None) -> pd.DataFrame:
        """M of ``dataset`` (default: the first) as a 0/1 table, fine classes × coarse classes."""
        r = self._relationship(dataset)
        matrix = np.eye(len(r["coarse_names"]), dtype=np.int8)[r["parents"]]
        return pd.DataFrame(matrix, index=self.fine_names, columns=r["coarse_names"])

    def _relationship(self, dataset: str | None) -> dict[str, Any]:
        if dataset is None:
            return self.relationships[0]
        for r in self.relationships:
            if r["dataset"] == dataset:
                return r
        raise KeyError(f"The model has no dataset {dataset!r}; it has {self.datasets}.")

    def __repr__(self) -> str:
        coarse = self.relationships[0]["coarse_names"]
        where = f", {len(self.relationships)} datasets" if len(self.relationships) > 1 else ""
        return (
            f"FalconModel({len(self.fine_names)} fine classes under {len(coarse)} coarse classes{where}, "
            f"{len(self.genes)} genes, {self.preprocessing['input_kind']} input)"
        )

    # ------------------------------------------------------------------------------------------ prediction
    @doc_params(**PREDICT_DOCS)
    def predict(
        self,
        adata: ad.AnnData,
        *,
        coarse_key: str | None = None,
        dataset: str | None = None,
        key_added: str = "falcon",
        layer: str | None = None,
        min_gene_overlap: float = 0.5,
        device: str = "cpu",
        copy: bool = False,
    ) -> ad.AnnData | None:
        """Assign the model's fine classes to the cells of ``adata``.

        Genes are matched by name (order does not matter); genes the model needs but ``adata`` lacks are set
        to zero, with a warning that reports the fraction found, and fewer than ``min_gene_overlap`` of them is
        an error. Counts are normalised and log-transformed as in training (the input kind is detected again).

        Parameters
        ----------
        {doc_adata_predict}
        {doc_predict_options}

        Returns
        -------
        {doc_predict_returns}
        """
        if not 0.0 <= min_gene_overlap <= 1.0:
            raise ValueError(f"min_gene_overlap must be a fraction in [0, 1], got {min_gene_overlap}.")
        if adata.n_obs == 0:
            raise ValueError("adata has no cells; nothing to predict.")
        relation = self._relationship(dataset)
        parents = np.asarray(relation["parents"], dtype=np.int64)
        coarse_codes = None if coarse_key is None else self._coarse_codes(adata, coarse_key, relation, dataset)

        if self.use_rep is not None:
            if layer is not None:
                raise ValueError(f"This model reads obsm[{self.use_rep!r}], not genes; leave layer out.")
            prepared = prepare_embedding(adata, self.use_rep, expected_dims=len(self.genes))
            found, overlap = np.arange(len(self.genes)), 1.0
        else:
            prepared, found, overlap = self._matched_genes(adata, layer, min_gene_overlap)
        torch_device = resolve_device(device)
        x = torch.zeros(adata.n_obs, self.classifier.n_inputs, device=torch_device)
        columns = np.r_[found, [len(self.genes)] if self.reads_total_counts else []].astype(np.int64)
        x[:, torch.as_tensor(columns, device=torch_device)] = prepared.to_tensor(torch_device)
        probs = self.classifier.to(torch_device).probs(x)
        del x
        if coarse_codes is None:
            allowed = torch.ones_like(probs, dtype=torch.bool)
        else:
            member = torch.as_tensor(parents[:, None] == np.arange(len(relation["coarse_names"])), device=torch_device)
            allowed = member[:, torch.as_tensor(coarse_codes, device=torch_device)].T
        merged = [self.fine_names.index(name) for name in self.training.get("merged", {})]
        if merged:  # subtypes merged into a sibling when the model was trained are not predicted
            allowed = allowed.clone()
            allowed[:, torch.as_tensor(merged, device=torch_device)] = False
        labels, confidence = within_coarse(probs, allowed)
        labels = labels.cpu().numpy().astype(np.int64)

        matrix = np.eye(len(relation["coarse_names"]), dtype=np.int8)[parents]
        view = relationship_view(matrix, labels, relation["coarse_names"], self.fine_names)
        params = {
            "method": "transfer",
            "coarse_key": coarse_key,
            "dataset": dataset,
            "layer": layer,
            "use_rep": self.use_rep,
            "genes_found": int(found.size),
            "gene_overlap": float(overlap),
            "input_kind": prepared.input_kind,
            "model": {"training": self.training, "versions": self.versions},
        }
        uns = {
            "params": h5ad_safe(params),
            **view,
            "fine_names": np.asarray(self.fine_names, dtype=object),
            "genes": np.asarray(self.genes, dtype=object),
        }
        outputs = Outputs(
            labels, self.fine_names, confidence.cpu().numpy().astype(np.float32), probs.cpu().numpy(), uns, {}
        )
        adata = adata.copy() if copy else adata
        write_outputs(adata, key_added, outputs)
        return adata if copy else None

    def _matched_genes(self, adata, layer, min_gene_overlap: float):
        """The model's genes in ``adata``, prepared as in training; their positions and the overlap."""
        prepared, found = prepare_genes(
            adata, self.genes, layer=layer, target_sum=self.target_sum, total_counts_feature=self.reads_total_counts
        )
        overlap = found.size / len(self.genes)
        if overlap < min_gene_overlap:
            raise ValueError(
                f"Only {found.size} of the model's {len(self.genes)} genes ({overlap:.0%}) are in adata.var_names, "
                f"below min_gene_overlap={min_gene_overlap:.0%}. Check that genes are named the same way (e.g. "
                "symbols vs Ensembl IDs), or lower min_gene_overlap."
            )
        if found.size < len(self.genes):
            warnings.warn(
                f"{len(self.genes) - found.size} of the model's {len(self.genes)} genes are missing from adata "
                f"(overlap {overlap:.1%}); they are set to 0.",
                UserWarning,
                stacklevel=3,
            )
        if prepared.input_kind != self.preprocessing["input_kind"]:
            logg.info(
                f"    the model was trained on {self.preprocessing['input_kind']} input, adata holds "
                f"{prepared.input_kind}: both end up log1p(normalize_total {self.target_sum:g})"
            )
        return prepared, found, overlap

    def _coarse_codes(self, adata, coarse_key: str, relation, dataset) -> np.ndarray:
        labels = checked_labels(adata, coarse_key, "coarse_key")
        known = relation["coarse_names"]
        unknown = sorted(set(map(str, labels.cat.categories)) - set(known))
        if unknown:
            taxonomy = f"dataset {dataset!r}" if dataset is not None else "the model"
            raise ValueError(
                f"adata.obs[{coarse_key!r}] has coarse classes unknown to {taxonomy}: {unknown}. The model knows "
                f"{known}; rename the labels to match, or predict without coarse_key."
            )
        return pd.Index(known).get_indexer(labels.astype(str)).astype(np.int64)

    # -------------------------------------------------------------------------------------- save and load
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the model to the directory ``path`` (created; it must not exist unless ``overwrite``).

        Both files are written to a temporary directory next to ``path`` which is then renamed, so an
        interrupted save leaves no half-written model."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it.")
        if path.exists() and not (path / METADATA_FILE).is_file():
            raise FileExistsError(f"{path} exists and is not a saved FALCON model; refusing to replace it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            save_file(self.classifier.tensors(), staging / WEIGHTS_FILE)
            self.saved = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            metadata = self.describe()
            document = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "metadata": metadata,
                "metadata_sha256": _digest(_canonical(metadata)),
                "weights_sha256": _digest((staging / WEIGHTS_FILE).read_bytes()),
            }
            (staging / METADATA_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False))
            plain_permissions(staging)  # mkdtemp's directory is private
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return path

    def describe(self) -> dict[str, Any]:
        """Everything but the weights, as plain JSON values (what ``model.json`` stores)."""
        network = self.classifier.network
        return _json_safe(
            {
                "genes": list(self.genes),
                "fine_names": self.fine_names,
                "relationships": self.relationships,
                "preprocessing": self.preprocessing,
                "network": {
                    "n_layers": (len(network) - 1) // 2,
                    "hidden_dim": network[0].out_features if len(network) > 1 else None,
                    "n_inputs": self.classifier.n_inputs,
                    "n_outputs": self.classifier.n_outputs,
                },
                "training": self.training,
                "versions": self.versions,
                "saved": self.saved,
            }
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> FalconModel:
        """Read a model written by :meth:`save`, refusing anything that does not verify.

        Raises :class:`ModelFileError` for a missing or unreadable file, a digest mismatch (truncated, corrupted
        or edited), or a format version newer than this falcon_sc reads."""
        path = Path(path)
        document = _read_document(path)
        metadata = document["metadata"]
        if _digest(_canonical(metadata)) != document.get("metadata_sha256"):
            raise ModelFileError(
                f"{path / METADATA_FILE}: the metadata does not match its checksum (edited or corrupted)."
            )
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFileError(f"{weights} is missing; a saved model holds {METADATA_FILE} and {WEIGHTS_FILE}.")
        if _digest(weights.read_bytes()) != document.get("weights_sha256"):
            raise ModelFileError(
                f"{weights}: the weights do not match their checksum (truncated, corrupted or replaced)."
            )
        try:
            tensors = load_file(weights)
            network = metadata["network"]
            classifier = FineClassifier.from_tensors(
                tensors,
                n_layers=network["n_layers"],
                hidden_dim=network["hidden_dim"],
                max_value=metadata["preprocessing"].get("max_value"),
            )
            return cls(
                classifier,
                genes=metadata["genes"],
                fine_names=metadata["fine_names"],
                relationships=metadata["relationships"],
                preprocessing=metadata["preprocessing"],
                training=metadata["training"],
                versions=metadata["versions"],
                saved=metadata.get("saved"),
            )
        except (SafetensorError, KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{path} is not a readable FALCON model: {err}") from None


def _read_document(path: Path) -> dict[str, Any]:
    """``model.json``, checked for its format and version (digests are checked by the caller)."""
    file = path / METADATA_FILE
    if not file.is_file():
        raise ModelFileError(f"{file} not found; is {path} a directory written by FalconModel.save?")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{file} is not valid JSON (truncated or corrupted): {err}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "metadata" not in document:
        raise ModelFileError(f"{file} is not a FALCON model description.")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        saved_by = document["metadata"].get("versions", {}).get("falcon_sc", "an unknown version")
        raise ModelFileError(
            f"{path} was saved in model format {version!r} by falcon_sc {saved_by}; this falcon_sc ({__version__}) "
            f"reads formats up to {FORMAT_VERSION}. Upgrade falcon_sc to load it."
        )
    return document


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_safe(value):
    """numpy scalars and arrays, tuples and paths as plain JSON values (floats keep their exact value)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Index):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    return value
