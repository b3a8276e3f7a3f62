"""ImageNet-based hierarchies: the four BREEDS benchmarks and tieredImageNet.

Both are built from an ILSVRC-2012 folder (``ROOT/train/<wnid>/*`` and ``ROOT/val/<wnid>/*``, the usual
layout with the validation images sorted into class folders) and the benchmark's hierarchy files, fetched
with pooch on first use from the public BREEDS and tieredImageNet repositories or read from a given folder.
Training images of the selected classes are split 90/10 per fine class into train and val; ImageNet's
validation images of those classes are the test split.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import ImageSet, ImageSplits, _splits

logger = logging.getLogger(__name__)

BREEDS_URL = "https://raw.githubusercontent.com/MadryLab/BREEDS-Benchmarks/master/imagenet_class_hierarchy/modified"
BREEDS_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")
TIERED_URL = "https://raw.githubusercontent.com/renmengye/few-shot-ssl-public/master/fewshot/data/tiered_imagenet_split"
TIERED_FILES = ("train.csv", "val.csv", "test.csv")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp"}
WORDNET_ROOT = "n00001740"  # "entity"


@dataclass(frozen=True)
class BreedsSpec:
    """A BREEDS benchmark: superclasses at ``level`` of the hierarchy (below ``ancestor``), each with
    ``n_subclasses`` ImageNet classes drawn with numpy's ``RandomState(2)``, as the BREEDS authors did."""

    level: int
    n_subclasses: int
    ancestor: str | None = None


BREEDS = {
    "entity13": BreedsSpec(level=3, n_subclasses=20),
    "entity30": BreedsSpec(level=4, n_subclasses=8),
    "living17": BreedsSpec(level=5, n_subclasses=4, ancestor="n00004258"),  # living thing
    "nonliving26": BreedsSpec(level=5, n_subclasses=4, ancestor="n00021939"),  # artifact
}


def hierarchy_files(kind: str, path: str | Path | None = None) -> Path:
    """The folder holding ``kind``'s (``"breeds"`` or ``"tiered"``) hierarchy files.

    With ``path`` the files must be there; otherwise they are downloaded once into pooch's cache.
    """
    url, names = {"breeds": (BREEDS_URL, BREEDS_FILES), "tiered": (TIERED_URL, TIERED_FILES)}[kind]
    if path is not None:
        path = Path(path)
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} lacks the {kind} hierarchy file(s) {missing} (from {url}).")
        return path
    import pooch

    cache = Path(pooch.os_cache("falcon_sc")) / kind
    for name in names:
        # The upstream files carry no published checksums; pooch logs the SHA-256 of what it fetched.
        pooch.retrieve(f"{url}/{name}", known_hash=None, fname=name, path=cache, progressbar=False)
    return cache


def breeds_classes(name: str, hierarchy_dir: str | Path) -> tuple[list[str], list[str], list[list[str]]]:
    """Superclass WordNet ids, their names, and each one's ImageNet class ids, for BREEDS benchmark ``name``."""
    try:
        spec = BREEDS[name]
    except KeyError:
        raise ValueError(f"Unknown BREEDS benchmark {name!r}; choose one of {sorted(BREEDS)}.") from None
    hierarchy_dir = Path(hierarchy_dir)
    leaves = {row[1] for row in json.loads((hierarchy_dir / "dataset_class_info.json").read_text())}
    children: dict[str, set[str]] = defaultdict(set)
    parents: dict[str, set[str]] = defaultdict(set)
    for line in (hierarchy_dir / "class_hierarchy.txt").read_text().splitlines():
        if line.strip():
            parent, child = line.split()
            parents[child].add(parent)
    node_names = dict(
        line.split("\t", 1) for line in (hierarchy_dir / "node_names.txt").read_text().splitlines() if "\t" in line
    )
    # Keep only the part of the hierarchy above ImageNet's classes.
    frontier = set(leaves)
    while frontier:
        up = set()
        for node in frontier:
            for parent in parents.get(node, ()):
                if node not in children[parent]:
                    children[parent].add(node)
                    up.add(parent)
        frontier = up
    # A node's level is its longest distance from the root (top-down).
    level: dict[str, int] = {}
    frontier_levels = [(WORDNET_ROOT, 0)]
    while frontier_levels:
        following = []
        for node, depth in frontier_levels:
            if depth > level.get(node, -1):
                level[node] = depth
                following += [(child, depth + 1) for child in children.get(node, ())]
        frontier_levels = following

    def descendants(node: str) -> set[str]:
        seen, todo = {node}, [node]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def leaves_below(node: str) -> list[str]:
        # A class of ImageNet ends the descent (as in BREEDS), even if the hierarchy continues below it.
        found, todo = set(), [node]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child in leaves:
                    found.add(child)
                else:
                    todo.append(child)
        return sorted(found | ({node} & leaves))

    allowed = descendants(spec.ancestor) if spec.ancestor is not None else None
    candidates = sorted(n for n, d in level.items() if d == spec.level and (allowed is None or n in allowed))
    rng = np.random.RandomState(2)
    supers, names, members = [], [], []
    for node in candidates:
        below = leaves_below(node)
        if len(below) >= spec.n_subclasses:
            supers.append(node)
            names.append(node_names.get(node, node))
            members.append([str(w) for w in rng.choice(below, spec.n_subclasses, replace=False)])
    return supers, names, members


def tiered_classes(split_dir: str | Path) -> tuple[list[str], list[list[str]]]:
    """tieredImageNet's 34 categories and their ImageNet classes, its train/val/test class splits merged."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in TIERED_FILES:
        with open(Path(split_dir) / name, newline="") as handle:
            for row in csv.reader(handle):
                if len(row) >= 2 and row[0].startswith("n") and row[0][1:].isdigit():  # skips a header
                    groups[row[1]].append(row[0])
    categories = sorted(groups)
    return categories, [sorted(set(groups[c])) for c in categories]


def _folder_set(folder: Path, wnids: list[str], coarse_of: dict[str, int], names, image_size: int) -> ImageSet:
    paths, coarse, fine = [], [], []
    missing = [w for w in wnids if not (folder / w).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} class folder(s) missing in {folder} (first: {missing[:3]}); expected an ImageNet "
            "folder with one sub-folder per WordNet id."
        )
    for fine_id, wnid in enumerate(wnids):
        files = sorted(p for p in (folder / wnid).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        coarse += [coarse_of[wnid]] * len(files)
        fine += [fine_id] * len(files)
    return ImageSet(
        coarse=np.asarray(coarse, dtype=np.int64),
        fine=np.asarray(fine, dtype=np.int64),
        coarse_names=names[0],
        fine_names=names[1],
        paths=tuple(paths),
        image_size=image_size,
    )


def load_imagenet_hierarchy(
    name: str,
    root: str | Path,
    *,
    hierarchy_dir: str | Path | None = None,
    image_size: int = 224,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> ImageSplits:
    """A BREEDS benchmark (``"living17"``, ``"nonliving26"``, ``"entity30"``, ``"entity13"``) or
    ``"tiered_imagenet"`` from the ImageNet folder ``root``; images are decoded on demand at ``image_size``."""
    if name == "tiered_imagenet":
        coarse_ids, members = tiered_classes(hierarchy_files("tiered", hierarchy_dir))
        coarse_names = coarse_ids
    else:
        coarse_ids, coarse_names, members = breeds_classes(name, hierarchy_files("breeds", hierarchy_dir))
    wnids = [w for group in members for w in group]
    coarse_of = {w: c for c, group in enumerate(members) for w in group}
    names = (tuple(coarse_names), tuple(wnids))
    root = Path(root)
    pool = _folder_set(root / "train", wnids, coarse_of, names, image_size)
    test = _folder_set(root / "val", wnids, coarse_of, names, image_size)
    logger.info("%s: %d coarse, %d fine classes, %d training images", name, len(members), len(wnids), len(pool))
    return _splits(name, pool, test, val_fraction, seed)
