"""``python -m falcon_sc.image``: one benchmark run with logs, metrics, checkpoints and resume.

Files written to ``--out``: ``settings.json`` (what was run), ``log.jsonl`` (one line per epoch: losses,
learning rate, changes of M, validation metrics when evaluated), ``checkpoint.pt`` (everything needed to
continue, rewritten atomically), and at the end ``metrics.json`` (val and test), ``relationship.csv`` and
``network.pt`` (the teacher's state dict). ``--resume`` continues from ``checkpoint.pt`` and reproduces the
uninterrupted run's remaining epochs. Under ``torchrun`` every rank trains on its slice of each batch (the
engine's data parallelism) and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core import distributed
from ..core.neighbors import NeighborGraph
from ..core.training_state import TrainingProgress
from .augment import channel_stats
from .benchmarks import BENCHMARKS, get_benchmark
from .train import build_network, evaluate, find_neighbors, image_falcon, make_views

logger = logging.getLogger("falcon_sc.image")

CHECKPOINT = "checkpoint.pt"
SPLITS = ("train", "val", "test")
# Settings that may differ between an interrupted run and its resumption.
RESUMABLE = {"resume", "stop_after_epochs", "device", "progress", "cache_dir"}


class UsageError(Exception):
    """Bad arguments or an output folder in the wrong state (exit code 2)."""


class _Stopped(Exception):
    """Raised after the checkpoint of ``--stop-after-epochs``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m falcon_sc.image", description="FALCON on an image benchmark (coarse labels only)."
    )
    parser.add_argument("--dataset", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument("--root", required=True, help="dataset folder (CIFAR pickles, Fashion-MNIST IDX, ImageNet)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--backbone", choices=["resnet18", "resnet50"], help="default: the benchmark's")
    parser.add_argument(
        "--width",
        type=int,
        default=64,
        help="channels of the backbone's first stage (64 as published and for pretrained weights; 16 runs ~10x "
        "faster on a CPU)",
    )
    parser.add_argument("--weights", help="backbone checkpoint (state dict, solo-learn, Lightning, MoCo)")
    parser.add_argument(
        "--prefix-map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rename checkpoint keys starting with OLD (repeatable; e.g. backbone.=)",
    )
    parser.add_argument("--hierarchy-dir", help="BREEDS / tieredImageNet hierarchy files (default: download)")
    parser.add_argument(
        "--cache-dir", help="decode ImageNet-based images once into uint8 arrays here (reused by later runs)"
    )
    parser.add_argument("--n-fine", type=int, help="number of fine classes (default: the true number)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any FALCON option")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split (and CIFAR-SI)")
    parser.add_argument("--device", help="default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu")
    parser.add_argument("--eval-every", type=int, default=10, help="validation metrics every N epochs")
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--stop-after-epochs", type=int, help="stop (with a checkpoint) after N epochs in total")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"{what} expects NAME=VALUE, got {pair!r}.")
        name, value = pair.split("=", 1)
        parsed[name] = value
    return parsed


def _value(text: str):
    """A JSON value (number, bool, list …) or, failing that, the string itself."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _config(bench, args):
    overrides = {k: _value(v) for k, v in _parse_pairs(args.set, "--set").items()}
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        return bench.config.replace(**overrides)
    except TypeError as err:
        raise UsageError(str(err)) from None


def _device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> dict:
    """Run (or resume) a benchmark; returns the final metrics."""
    out = Path(args.out)
    rank, world_size = distributed.world()
    checkpoint_path = out / CHECKPOINT
    if args.resume and not checkpoint_path.is_file():
        raise UsageError(f"--resume: no {CHECKPOINT} in {out}.")
    if not args.resume and checkpoint_path.exists():
        raise UsageError(
            f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out."
        )
    bench = get_benchmark(args.dataset)
    config = _config(bench, args)
    prefix_map = _parse_pairs(args.prefix_map, "--prefix-map") or None
    settings = {k: v for k, v in vars(args).items() if k not in RESUMABLE}
    settings["config"] = config.to_dict()
    settings_path = out / "settings.json"
    if args.resume:
        saved = json.loads(settings_path.read_text())
        changed = sorted(
            k for k in set(saved) | set(settings) if json.dumps(saved.get(k)) != json.dumps(settings.get(k))
        )
        if changed:
            raise UsageError(f"--resume with different settings: {changed}; resume with the original arguments.")
    device = _device(args.device)

    loader_options = {"seed": args.split_seed}
    if bench.imagenet:
        loader_options.update(hierarchy_dir=args.hierarchy_dir)
    splits = bench.loader(args.root, **loader_options)
    if len(splits.val) == 0:
        raise ValueError(
            f"The validation split of {args.root} is empty: it takes a share of every fine class with at least two "
            "training images, and here each class has one. Give the run more training images per class."
        )
    if args.cache_dir and splits.train.paths is not None:
        prefix = f"{args.dataset}_{args.split_seed}_{splits.train.image_size}"

        def decoded() -> dict:
            return {part: getattr(splits, part).cached(args.cache_dir, f"{prefix}_{part}") for part in SPLITS}

        # Rank 0 decodes; the other ranks then open its files.
        cached = decoded() if rank == 0 else None
        if world_size > 1:
            torch.distributed.barrier()
        splits = replace(splits, **(cached or decoded()))
    n_fine = args.n_fine or splits.n_fine
    stats = bench.stats or channel_stats(splits.train)
    backbone = args.backbone or bench.backbone

    resume = neighbors = None
    if args.resume:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        resume = state["training"]
        resume["relationship"] = np.asarray(resume["relationship"], dtype=np.int8)
        neighbors = NeighborGraph(state["neighbors"].numpy(), state["neighbors_valid"].numpy())
        logger.info("resuming %s after epoch %d", out, resume["epoch"])
        log_path = out / "log.jsonl"
        if rank == 0 and log_path.is_file():  # epochs logged after the checkpoint are run again
            kept = [line for line in log_path.read_text().splitlines() if json.loads(line)["epoch"] <= resume["epoch"]]
            log_path.write_text("".join(line + "\n" for line in kept))
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        settings_path.write_text(json.dumps(settings, indent=1, default=str))
    log_path = out / "log.jsonl"
    val_views = make_views(
        splits.val, size=bench.image_size, augmentation=bench.augmentation, stats=stats, device=device
    )
    amp = config.mixed_precision and device.type == "cuda"
    t_start = time.perf_counter()

    def on_epoch_end(progress: TrainingProgress) -> None:
        record = {"epoch": progress.epoch, "seconds": round(time.perf_counter() - t_start, 2)}
        record.update({k: v[-1] for k, v in progress.history.items()})
        if progress.epoch % args.eval_every == 0 or progress.epoch == progress.epochs:
            scores = evaluate(progress.teacher, val_views, progress.relationship, device, amp)
            record.update({f"val_{k}": v for k, v in scores.items()})
        stop = args.stop_after_epochs is not None and progress.epoch >= args.stop_after_epochs
        if rank == 0:
            with open(log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            logger.info("epoch %s", json.dumps(record))
            if progress.epoch % args.checkpoint_every == 0 or progress.epoch == progress.epochs or stop:
                training = progress.state_dict()
                training["relationship"] = training["relationship"].tolist()
                _save_atomic(
                    {
                        "training": training,
                        "neighbors": torch.as_tensor(neighbors.indices),
                        "neighbors_valid": torch.as_tensor(neighbors.n_valid),
                    },
                    checkpoint_path,
                )
        if stop and progress.epoch < progress.epochs:
            raise _Stopped

    network, report = build_network(
        backbone,
        n_fine,
        in_channels=splits.train.n_channels,
        weights=None if args.resume else args.weights,
        prefix_map=prefix_map,
        seed=args.seed,
        width=args.width,
    )
    if report is not None and rank == 0:
        (out / "checkpoint_report.json").write_text(json.dumps(report.__dict__, indent=1))
    network = network.to(device).to(memory_format=torch.channels_last)
    train_views = make_views(
        splits.train, size=bench.image_size, augmentation=bench.augmentation, stats=stats, device=device
    )
    if neighbors is None:  # found here, not in image_falcon, because every checkpoint stores them
        neighbors = find_neighbors(network, train_views, config, device)

    result = image_falcon(
        splits.train,
        n_fine=n_fine,
        config=config,
        backbone=backbone,
        image_size=bench.image_size,
        augmentation=bench.augmentation,
        stats=stats,
        network=network,
        views=train_views,
        neighbors=neighbors,
        evaluation={"val": val_views, "test": splits.test},
        device=device,
        random_state=args.seed,
        on_epoch_end=on_epoch_end,
        resume=resume,
        progress=args.progress,
    )
    if rank == 0:
        summary = {
            "dataset": args.dataset,
            "n_train": len(splits.train),
            "n_coarse": len(splits.train.coarse_names),
            "n_fine": n_fine,
            "epochs": result.result.schedule.epochs,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "world_size": world_size,
            "seconds": round(time.perf_counter() - t_start, 1),
            **result.metrics,
        }
        (out / "metrics.json").write_text(json.dumps(summary, indent=1))
        fine_names = [f"fine_{i}" for i in range(n_fine)]
        pd.DataFrame(result.result.relationship, index=fine_names, columns=list(splits.train.coarse_names)).to_csv(
            out / "relationship.csv"
        )
        _save_atomic(result.network.state_dict(), out / "network.pt")
        return summary
    return result.metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        summary = run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except _Stopped:
        print(f"stopped after epoch {args.stop_after_epochs}; continue with --resume", file=sys.stderr)
        return 0
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if distributed.world()[0] == 0:
        print(json.dumps(summary, indent=1))
    return 0
