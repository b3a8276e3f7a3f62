"""The ``falcon-sc`` command line: discover subtypes in an .h5ad file, transfer them with a saved model, and
describe a saved model.

Exit codes: 0 success; 1 the computation failed; 2 bad arguments or input (unreadable file, unknown column,
invalid values, a model that does not verify); 3 an output exists and ``--force`` was not given; 130
interrupted. Errors go to stderr as one line, with the traceback only under ``--debug``. Every output is
written to a temporary file next to its destination and then renamed, so an interrupted run leaves no
half-written file.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ._files import atomic_file

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_EXISTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: The options of ``tl.discover_subtypes`` that ``falcon-sc discover`` takes as ``--name`` flags of the same
#: meaning (``tests/test_cli.py`` checks that none is missing). The others: ``adata`` (the input file),
#: ``coarse_key`` and ``dataset_key`` (flags of their own), ``preset`` and ``**options`` (``--preset``,
#: ``--option``), ``progress`` (``--quiet``), ``copy`` (the output file) and ``return_model`` (``--save-model``).
DISCOVER_FLAGS = (
    "n_fine",
    "n_fine_range",
    "key_added",
    "layer",
    "use_rep",
    "batch_key",
    "sample_key",
    "merge_unsupported",
    "n_top_genes",
    "total_counts_feature",
    "target_sum",
    "random_state",
    "device",
    "n_jobs",
)


class OutputExistsError(FileExistsError):
    """An output path exists and ``--force`` was not given."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    try:
        # imported here so that --help answers at once
        import scanpy as sc

        # --quiet: errors only (scanpy's logger and Python warnings); otherwise progress, info and warnings.
        # The caller's verbosity comes back afterwards (main may be called in-process).
        verbosity = sc.settings.verbosity
        sc.settings.verbosity = 0 if args.quiet else 2
        try:
            with warnings.catch_warnings():
                if args.quiet:
                    warnings.simplefilter("ignore")
                else:
                    warnings.showwarning = _show_warning
                args.command(args)
        finally:
            sc.settings.verbosity = verbosity
    except KeyboardInterrupt:
        print("falcon-sc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        print(f"falcon-sc: error: {_message(err)}", file=sys.stderr)
        return _exit_code(err)
    return EXIT_OK


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, like an error: the source line Python would print means nothing to a CLI user."""
    print(f"falcon-sc: warning: {message}", file=sys.stderr)


def _say(args: argparse.Namespace, text: str) -> None:
    """What the command did (outputs written), unless --quiet."""
    if not args.quiet:
        print(text, file=sys.stderr)


def _exit_code(err: Exception) -> int:
    from .falcon_model import ModelFileError

    if isinstance(err, OutputExistsError):
        return EXIT_EXISTS
    if isinstance(err, ModelFileError | FileNotFoundError | IsADirectoryError | KeyError | ValueError | TypeError):
        return EXIT_INPUT
    return EXIT_FAILED


def _message(err: Exception) -> str:
    # a KeyError's str() is the repr of its argument, quotes included
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err) or type(err).__name__


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="print errors only")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    writes = argparse.ArgumentParser(add_help=False)  # options of the commands that write files
    writes.add_argument("--force", action="store_true", help="replace outputs that already exist")
    writes.add_argument(
        "--no-compression", action="store_true", help="write the .h5ad uncompressed (larger, a little faster)"
    )
    parser = argparse.ArgumentParser(
        prog="falcon-sc",
        description="Discover fine-grained cell subtypes inside coarse labels with FALCON.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad arguments or input, 3 output exists (use --force), 130 interrupted.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    discover = commands.add_parser(
        "discover", parents=[common, writes], help="train FALCON on an .h5ad file and write the subtypes"
    )
    discover.add_argument("input", type=Path, metavar="IN.h5ad")
    discover.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.h5ad")
    discover.add_argument("--coarse-key", required=True, help="obs column with the coarse labels")
    discover.add_argument(
        "--n-fine",
        required=True,
        type=_n_fine,
        help='number of fine classes, "auto", or per coarse class as JSON, e.g. \'{"T": 3, "B": 1}\'',
    )
    discover.add_argument(
        "--n-fine-range", type=int, nargs=2, metavar=("LOWER", "UPPER"), help="bounds of --n-fine auto"
    )
    discover.add_argument("--dataset-key", help="obs column naming each cell's dataset")
    discover.add_argument("--batch-key", help="obs column used as batch in gene selection (e.g. patient)")
    discover.add_argument("--sample-key", help="obs column naming each cell's sample or donor (support per sample)")
    discover.add_argument(
        "--merge-unsupported", action="store_true", help="give unsupported subtypes' cells to a supported sibling"
    )
    discover.add_argument("--layer", help="layer to read instead of X")
    discover.add_argument("--use-rep", help="obsm key of an embedding to work on instead of genes (e.g. X_scVI)")
    discover.add_argument("--n-top-genes", type=int, default=2000)
    for flag, kind, values, meaning in (
        ("--total-counts-feature", _boolean, "{auto,true,false}", "log1p(total counts) as a feature (auto: panels)"),
        ("--target-sum", float, "{auto,NUMBER}", "total counts per cell before log1p (auto: from the data's depth)"),
    ):
        discover.add_argument(flag, type=_auto_or(kind), default="auto", metavar=values, help=meaning)
    discover.add_argument("--preset", default="default", choices=["default", "paper"])
    discover.add_argument("--random-state", type=int, default=0)
    discover.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    discover.add_argument(
        "--n-jobs", type=int, default=None, help="CPU threads for PCA and neighbours (-1: all; see training_threads)"
    )
    discover.add_argument("--key-added", default="falcon")
    discover.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option,
        metavar="NAME=VALUE",
        help="any FalconConfig field, e.g. --option epochs=20 (repeatable)",
    )
    discover.add_argument("--save-model", type=Path, metavar="DIR", help="also save the trained model here")
    discover.add_argument("--plot", type=Path, metavar="GRAPH.png", help="also draw the relationship graph")
    discover.set_defaults(command=_discover)

    predict = commands.add_parser(
        "predict", parents=[common, writes], help="transfer a saved model's subtypes to the cells of an .h5ad file"
    )
    predict.add_argument("model", type=Path, metavar="MODEL_DIR")
    predict.add_argument("input", type=Path, metavar="IN.h5ad")
    predict.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.h5ad")
    predict.add_argument("--coarse-key", help="obs column with coarse labels named as in the model")
    predict.add_argument("--dataset", help="for a model of several datasets: whose coarse taxonomy to use")
    predict.add_argument("--layer", help="layer to read instead of X")
    predict.add_argument("--min-gene-overlap", type=float, default=0.5)
    predict.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--key-added", default="falcon")
    predict.set_defaults(command=_predict)

    info = commands.add_parser("info", parents=[common], help="describe a saved model")
    info.add_argument("model", type=Path, metavar="MODEL_DIR")
    info.add_argument("--json", action="store_true", help="print the model's metadata as JSON")
    info.set_defaults(command=_info)
    return parser


def _n_fine(value: str) -> int | str | dict:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        counts = json.loads(value)
    except json.JSONDecodeError:
        counts = None
    if not isinstance(counts, dict):
        raise argparse.ArgumentTypeError(
            f'expected an integer, "auto" or a JSON object of per-class counts, got {value!r}'
        ) from None
    return counts


def _boolean(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


def _auto_or(kind):
    """An argparse type: "auto", else ``kind(value)``."""

    def parse(value: str):
        if value == "auto":
            return value
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'expected "auto" or a {kind.__name__.strip("_")}, got {value!r}'
            ) from None

    return parse


def _option(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE read as a Python literal (number, bool, None, tuple), else kept as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def _discover(args: argparse.Namespace) -> None:
    import falcon_sc as fs
    from falcon_sc.tl._discover import discover_with
    from falcon_sc.tl._settings import DiscoverySettings

    _refuse_existing([args.output, args.save_model, args.plot], args.force)
    # every option checked before the file is read
    settings = DiscoverySettings.build(
        preset=args.preset,
        options=dict(args.option),
        progress=not args.quiet,
        return_model=args.save_model is not None,
        **{name: getattr(args, name) for name in DISCOVER_FLAGS},
    )
    adata = _read(args.input)
    result = discover_with(adata, args.coarse_key, args.dataset_key, settings)
    _write_h5ad(adata, args)
    if args.save_model is not None:
        result.save(args.save_model, overwrite=args.force)
        _say(args, f"model saved to {args.save_model}")
    if args.plot is not None:
        fig = fs.pl.relationship_graph(adata, key=args.key_added, show=False, return_fig=True)
        with atomic_file(args.plot) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format=args.plot.suffix.lstrip(".") or "png")
        _say(args, f"wrote the relationship graph to {args.plot}")


def _predict(args: argparse.Namespace) -> None:
    import falcon_sc as fs

    _refuse_existing([args.output], args.force)
    model = fs.FalconModel.load(args.model)
    adata = _read(args.input)
    model.predict(
        adata,
        coarse_key=args.coarse_key,
        dataset=args.dataset,
        layer=args.layer,
        min_gene_overlap=args.min_gene_overlap,
        device=args.device,
        key_added=args.key_added,
    )
    _write_h5ad(adata, args)


def _info(args: argparse.Namespace) -> None:
    import falcon_sc as fs

    model = fs.FalconModel.load(args.model)
    if args.json:
        print(json.dumps(model.describe(), indent=1, ensure_ascii=False))
        return
    print(model)
    versions = ", ".join(f"{k} {v}" for k, v in model.versions.items())
    print(f"saved by {versions}")
    training = model.training
    print(
        "trained with coarse_key={!r}, n_fine={}, preset={!r}, random_state={}".format(
            training.get("coarse_key"), training.get("n_fine"), training.get("preset"), training.get("random_state")
        )
    )
    print(f"preprocessing: {json.dumps(model.preprocessing)}")
    for dataset in model.datasets:
        relationship = model.relationship(dataset)
        title = f"relationship of dataset {dataset!r}" if dataset is not None else "relationship"
        print(f"\n{title} (fine class → coarse class):")
        for fine, coarse in zip(relationship.index, relationship.idxmax(axis=1), strict=True):
            print(f"  {fine} → {coarse}")


def _read(path: Path):
    import anndata as ad

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    try:
        return ad.read_h5ad(path)
    except OSError as err:  # h5py's error for a file that is not HDF5
        raise ValueError(f"{path} is not a readable .h5ad file ({err}).") from None


def _refuse_existing(paths: Sequence[Path | None], force: bool) -> None:
    """Fail before any work if an output exists (and is not to be replaced)."""
    existing = [str(p) for p in paths if p is not None and p.exists()]
    if existing and not force:
        raise OutputExistsError(f"output exists: {', '.join(existing)}; pass --force to replace it.")


def _write_h5ad(adata, args: argparse.Namespace) -> None:
    with atomic_file(args.output) as tmp:
        adata.write_h5ad(tmp, compression=None if args.no_compression else "gzip")
    _say(args, f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
