"""Image backend: dataset loaders on tiny files in the real formats, backbones, checkpoint loading, views,
and the runner end to end with resume."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from falcon_sc.image import (
    VISION,
    Augmentation,
    build_backbone,
    image_falcon,
    load_backbone_weights,
    load_cifar100,
    load_fashion_mnist,
    load_imagenet_hierarchy,
)
from falcon_sc.image.augment import AugmentedImages, channel_stats, random_resized_crop
from falcon_sc.image.benchmarks import get_benchmark
from falcon_sc.image.datasets import CIFAR68_DROPPED, FASHION_MNIST_CLASSES
from falcon_sc.image.imagenet import BREEDS, breeds_classes, hierarchy_files, tiered_classes
from falcon_sc.image.runner import main as runner_main
from falcon_sc.image.train import build_network, evaluate, find_neighbors, make_views

# ----------------------------------------------------------------------------------------------- fixtures


def _write_cifar(root: Path, n_train: int, n_test: int) -> None:
    """CIFAR-100's python format: pickled dicts with bytes keys; fine class f belongs to superclass f % 20."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta = {
        b"fine_label_names": [f"fine{f}".encode() for f in range(100)],
        b"coarse_label_names": [f"super{c}".encode() for c in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    for part, per_class in (("train", n_train), ("test", n_test)):
        fine = np.repeat(np.arange(100), per_class)
        # Images of a class share a brightness, so the classes differ.
        data = (rng.integers(0, 60, (fine.size, 3072)) + 2 * fine[:, None]).astype(np.uint8)
        batch = {
            b"data": data,
            b"fine_labels": fine.tolist(),
            b"coarse_labels": (fine % 20).tolist(),
            b"filenames": [f"{i}.png".encode() for i in range(fine.size)],
        }
        (folder / part).write_bytes(pickle.dumps(batch))


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    _write_cifar(root, n_train=20, n_test=2)
    return root


@pytest.fixture(scope="module")
def tiny_cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_cifar")
    _write_cifar(root, n_train=2, n_test=1)
    return root


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


# WordNet-like hierarchy: root → a → living (n00004258) → b → c → {s1, s2, s3} → ImageNet classes.
# s1 and s2 have 5 classes (enough for Living17's 4), s3 only 2 (left out).
LEAVES = {"n10000001": [f"n2000000{i}" for i in range(5)], "n10000002": [f"n2100000{i}" for i in range(5)]}
LEAVES["n10000003"] = ["n22000000", "n22000001"]


def _write_hierarchy(folder: Path) -> None:
    edges = [("n00001740", "n09000001"), ("n09000001", "n00004258"), ("n00004258", "n09000002")]
    edges += [("n09000002", "n09000003")] + [("n09000003", s) for s in LEAVES]
    edges += [(s, leaf) for s, leaves in LEAVES.items() for leaf in leaves]
    leaves = [leaf for group in LEAVES.values() for leaf in group]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "class_hierarchy.txt").write_text("\n".join(f"{p} {c}" for p, c in edges) + "\n")
    (folder / "dataset_class_info.json").write_text(json.dumps([[i, w, f"class {w}"] for i, w in enumerate(leaves)]))
    names = {"n10000001": "dogs", "n10000002": "cats", "n10000003": "bears"}
    (folder / "node_names.txt").write_text("\n".join(f"{w}\t{n}" for w, n in names.items()) + "\n")


def _write_imagenet(root: Path, wnids: list[str], per_class: int) -> None:
    rng = np.random.default_rng(1)
    for split, n in (("train", per_class), ("val", 1)):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG", format="PNG")


# ------------------------------------------------------------------------------------------------ loaders


def test_cifar100_loader_splits_each_fine_class_90_10(cifar_root):
    splits = load_cifar100(cifar_root)
    assert splits.n_fine == 100 and len(splits.train.coarse_names) == 20
    assert np.all(np.bincount(splits.train.fine) == 18) and np.all(np.bincount(splits.val.fine) == 2)
    assert len(splits.test) == 200 and splits.train.pixels.shape[1:] == (32, 32, 3)
    # The superclass of every image is its fine class's (f % 20 in the fixture), names carried along.
    assert np.all(splits.train.coarse == splits.train.fine % 20)
    assert splits.train.fine_names[7] == "fine7" and splits.train.coarse_names[3] == "super3"
    # The split is seeded: the same seed gives the same images, another seed others.
    again, other = load_cifar100(cifar_root, seed=0), load_cifar100(cifar_root, seed=1)
    assert np.array_equal(again.val.pixels, splits.val.pixels)
    assert not np.array_equal(other.val.pixels, splits.val.pixels)


def test_cifar68_drops_the_listed_fine_classes(cifar_root):
    splits = load_cifar100(cifar_root, variant="cifar68")
    assert splits.n_fine == 68 and len(CIFAR68_DROPPED) == 32
    kept_names = set(splits.train.fine_names)
    assert not kept_names & {f"fine{f}" for f in CIFAR68_DROPPED}
    assert set(splits.test.fine_names) == kept_names and np.isin(splits.test.fine, np.arange(68)).all()
    per_coarse = [len(np.unique(splits.train.fine[splits.train.coarse == c])) for c in range(20)]
    assert sum(per_coarse) == 68 and len(set(per_coarse)) > 1  # superclasses now differ in size


def test_cifar_si_keeps_a_seeded_fraction_per_class(cifar_root):
    splits = load_cifar100(cifar_root, variant="cifar_si", seed=3)
    counts = np.bincount(splits.train.fine) + np.bincount(splits.val.fine)
    assert counts.min() >= int(0.32 * 20) and counts.max() <= 20 and len(np.unique(counts)) > 5
    assert len(splits.test) == 200  # the test split stays complete
    again = load_cifar100(cifar_root, variant="cifar_si", seed=3)
    assert np.array_equal(np.bincount(again.train.fine), np.bincount(splits.train.fine))


def test_cifar_loader_errors_name_the_fix(tmp_path, cifar_root):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path)
    with pytest.raises(ValueError, match="cifar68"):
        load_cifar100(cifar_root, variant="cifar50")


def test_fashion_mnist_loader_groups_the_ten_classes(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        labels = np.arange(n) % 10
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
    splits = load_fashion_mnist(tmp_path)
    assert splits.train.pixels.shape[1:] == (28, 28, 1) and len(splits.test) == 20
    names = splits.train.coarse_names
    parent = {FASHION_MNIST_CLASSES[f]: names[c] for f, c in zip(splits.train.fine, splits.train.coarse, strict=True)}
    assert parent["Coat"] == parent["Shirt"] == "tops" and parent["Sneaker"] == "footwear" and parent["Bag"] == "bag"
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "missing")


def test_breeds_selection_follows_levels_ancestor_and_seeded_draw(tmp_path):
    _write_hierarchy(tmp_path)
    supers, names, members = breeds_classes("living17", tmp_path)
    assert supers == ["n10000001", "n10000002"] and names == ["dogs", "cats"]  # bears: too few classes
    rng = np.random.RandomState(2)  # the BREEDS authors' draw
    expected = [list(rng.choice(sorted(LEAVES[s]), 4, replace=False)) for s in supers]
    assert members == expected
    # Nonliving26 looks below "artifact", absent here; the other benchmarks are at other levels.
    assert breeds_classes("nonliving26", tmp_path)[0] == []
    assert set(BREEDS) == {"living17", "nonliving26", "entity30", "entity13"}
    with pytest.raises(ValueError, match="living17"):
        breeds_classes("living18", tmp_path)


def test_hierarchy_files_are_downloaded_once_with_pooch(tmp_path, monkeypatch):
    # Serve hierarchy files on localhost and point the loader at them: the real download code runs.
    served = tmp_path / "served"
    _write_hierarchy(served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("falcon_sc.image.imagenet.BREEDS_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        folder = hierarchy_files("breeds")
    finally:
        server.shutdown()
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "class_hierarchy.txt").read_text() == (served / "class_hierarchy.txt").read_text()
    assert hierarchy_files("breeds") == folder  # cached: the server is gone
    assert breeds_classes("living17", folder)[0] == ["n10000001", "n10000002"]


def test_breeds_and_tiered_load_from_an_imagenet_folder(tmp_path):
    hierarchy, root = tmp_path / "breeds", tmp_path / "imagenet"
    _write_hierarchy(hierarchy)
    _write_imagenet(root, [leaf for group in LEAVES.values() for leaf in group], per_class=3)
    splits = load_imagenet_hierarchy("living17", root, hierarchy_dir=hierarchy, image_size=16)
    assert len(splits.train.coarse_names) == 2 and splits.n_fine == 8
    assert len(splits.train) == 16 and len(splits.val) == 8 and len(splits.test) == 8
    batch = splits.train.load(np.arange(3))
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == torch.uint8

    # Decoded once into a memory-mapped array: the same pixels, reused while the files and size are the same.
    cached = splits.train.cached(tmp_path / "cache", "living17_train")
    assert cached.paths is None and torch.equal(cached.load(np.arange(16)), splits.train.load(np.arange(16)))
    stamp = (tmp_path / "cache" / "living17_train.npy").stat().st_mtime_ns
    splits.train.cached(tmp_path / "cache", "living17_train")
    assert (tmp_path / "cache" / "living17_train.npy").stat().st_mtime_ns == stamp
    smaller = load_imagenet_hierarchy("living17", root, hierarchy_dir=hierarchy, image_size=8)
    living = splits
    assert smaller.train.cached(tmp_path / "cache", "living17_train").pixels.shape == (16, 8, 8, 3)

    tiered = tmp_path / "tiered"
    tiered.mkdir()
    (tiered / "train.csv").write_text("synset,category\nn20000000,n10000001\nn20000001,n10000001\n")
    (tiered / "val.csv").write_text("n21000000,n10000002\n")
    (tiered / "test.csv").write_text("n22000000,n10000003\nn20000002,n10000001\n")
    categories, members = tiered_classes(tiered)
    assert categories == ["n10000001", "n10000002", "n10000003"]
    assert members[0] == ["n20000000", "n20000001", "n20000002"]  # splits merged
    splits = load_imagenet_hierarchy("tiered_imagenet", root, hierarchy_dir=tiered, image_size=16)
    assert len(splits.train.coarse_names) == 3 and splits.n_fine == 5
    with pytest.raises(FileNotFoundError, match=r"node_names\.txt"):
        load_imagenet_hierarchy("living17", root, hierarchy_dir=tiered)
    Path(living.train.paths[5]).write_bytes(b"not an image")
    with pytest.raises(OSError, match=f"Cannot read the image {living.train.paths[5]}"):
        living.train.load(np.arange(16))
    with pytest.raises(FileNotFoundError, match="class folder"):
        load_imagenet_hierarchy("living17", tmp_path / "empty", hierarchy_dir=hierarchy)


# ------------------------------------------------------------------------------------- backbones, weights


@pytest.mark.parametrize(
    ("name", "n_params", "size", "width"),
    # torchvision's ResNet-18 / ResNet-50 without their 1000-class fc (11,689,512 − 513,000 and
    # 25,557,032 − 2,049,000); ResNet-18's CIFAR stem replaces the 7×7 conv (9,408) by a 3×3 one (1,728).
    [("resnet18", 11_176_512 - 9_408 + 1_728, 32, 512), ("resnet50", 23_508_032, 64, 2048)],
)
def test_backbones_match_torchvision_architectures(name, n_params, size, width):
    backbone = build_backbone(name)
    assert sum(p.numel() for p in backbone.parameters()) == n_params
    keys = backbone.state_dict().keys()
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer4.1.bn2.weight"} <= set(keys)
    assert ("layer1.0.downsample.0.weight" in keys) == (name == "resnet50")
    assert backbone(torch.randn(2, 3, size, size)).shape == (2, width)
    assert build_backbone(name, in_channels=1)(torch.randn(2, 1, size, size)).shape == (2, width)
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("vit")


def test_narrow_backbone_scales_every_stage():
    # Quarter width: every convolution has a quarter of the input and output channels, so 1/16 of the
    # weights (batch-norm parameters scale by 1/4), and the features are 8 × 16 = 128 wide.
    full, narrow = build_backbone("resnet18", in_channels=1), build_backbone("resnet18", in_channels=1, width=16)
    assert narrow.feature_dim == 128 and narrow(torch.randn(2, 1, 28, 28)).shape == (2, 128)
    full_state = full.state_dict()
    assert narrow.state_dict().keys() == full_state.keys()
    for key, value in narrow.state_dict().items():
        ref = full_state[key]
        if value.ndim == 4:  # conv weights: out × in × kh × kw
            assert (
                value.shape[0] * 4 == ref.shape[0]
                and value.shape[1] * (1 if key == "conv1.weight" else 4) == ref.shape[1]
            )
    with pytest.raises(ValueError, match="width"):
        build_backbone("resnet18", width=0)


def test_checkpoint_prefix_mapping_and_report(tmp_path):
    torch.manual_seed(0)
    source = build_backbone("resnet18")
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    state["projector.0.weight"] = torch.randn(4, 4)
    path = tmp_path / "solo.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    target = build_backbone("resnet18")
    report = load_backbone_weights(target, path)  # solo-learn layout recognised
    assert report.missing == [] and report.unexpected == [] and report.ignored == ["projector.0.weight"]
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)

    partial = {f"encoder.{k}": v for k, v in source.state_dict().items() if not k.startswith("layer4")}
    torch.save(partial, tmp_path / "partial.pt")
    report = load_backbone_weights(build_backbone("resnet18"), tmp_path / "partial.pt", prefix_map={"encoder.": ""})
    assert report.missing and all(k.startswith("layer4") for k in report.missing)
    with pytest.raises(ValueError, match="do not fit"):
        load_backbone_weights(build_backbone("resnet50"), path)
    with pytest.raises(ValueError, match="No tensor"):
        load_backbone_weights(build_backbone("resnet18"), path, prefix_map={"teacher.": ""})


# ------------------------------------------------------------------------------------------------- views


def test_views_are_seeded_and_the_identity_crop_is_exact(cifar_root):
    images = load_cifar100(cifar_root).train
    views = AugmentedImages(images, size=32, augmentation=Augmentation(), mean=(0.5,) * 3, std=(0.25,) * 3)
    idx = torch.arange(8)
    a = views.student(idx, torch.Generator().manual_seed(5))
    b = views.student(idx, torch.Generator().manual_seed(5))
    c = views.student(idx, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(views.teacher(idx, torch.Generator())).all()
    x = images.load(np.arange(4)).float() / 255
    same = random_resized_crop(x, 32, Augmentation(crop_scale=(1, 1), crop_ratio=(1, 1), flip=False), torch.Generator())
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    splits = load_cifar100(cifar_root)
    with pytest.raises(ValueError, match="another ImageSet"):  # views of the val split passed for train
        image_falcon(
            splits.train,
            n_fine=20,
            config=VISION,
            views=make_views(
                splits.val, size=32, augmentation=Augmentation(), stats=((0.5,) * 3, (0.25,) * 3), device="cpu"
            ),
        )


def test_image_neighbours_follow_neighbor_share_with_fine_classes_in_proportion_to_class_size(cifar_root):
    """18 training images per fine class, 5 fine classes per superclass: 0.35 × 18 = 6 of the 20 neighbours kept."""
    images = load_cifar100(cifar_root).train
    network, _ = build_network("resnet18", 100, seed=0, width=8)
    views = make_views(images, size=32, augmentation=Augmentation(), stats=channel_stats(images), device="cpu")
    full = find_neighbors(network, views, VISION, "cpu")
    fewer = find_neighbors(network, views, VISION.replace(neighbor_share=0.35), "cpu")
    assert VISION.neighbor_share is None and (full.n_valid == 20).all() and (fewer.n_valid == 6).all()
    np.testing.assert_array_equal(fewer.indices[:, :6], full.indices[:, :6])  # each image's 6 nearest


# ------------------------------------------------------------------------------------------------ runner


TEST_WIDTH = 16
# One sampled neighbour per image and a quarter-width ResNet: the ResNet passes are most of a CPU step.
SMALL_RUN = ["--set", "n_neighbors=3", "--set", "n_sampled_neighbors=1", "--width", str(TEST_WIDTH)]
SMALL_RUN += ["--device", "cpu", "--n-fine", "20"]


def _run(root, out, *extra) -> int:
    options = ["--epochs", "2", "--batch-size", "25", *SMALL_RUN, "--eval-every", "1", *extra]
    return runner_main(["--dataset", "cifar100", "--root", str(root), "--out", str(out), *options])


def test_runner_end_to_end_and_resume_reproduces_the_uninterrupted_run(tiny_cifar_root, tmp_path, capsys):
    full, split = tmp_path / "full", tmp_path / "split"
    assert _run(tiny_cifar_root, full) == 0
    metrics = json.loads((full / "metrics.json").read_text())
    assert {"acc", "ari", "ged", "acc_unrestricted"} <= set(metrics["test"]) and metrics["epochs"] == 2
    assert metrics["test"] == pytest.approx(_rescored(tiny_cifar_root, full))  # what was saved scores as reported
    log = [json.loads(line) for line in (full / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(np.isfinite(r["total"]) for r in log)

    assert _run(tiny_cifar_root, split, "--stop-after-epochs", "1") == 0
    assert not (split / "metrics.json").exists() and (split / "checkpoint.pt").is_file()
    assert _run(tiny_cifar_root, split) == 2  # a run is there: refuses to start over
    assert "--resume" in capsys.readouterr().err
    assert _run(tiny_cifar_root, split, "--resume", "--lr", "0.2") == 2  # different settings
    assert _run(tiny_cifar_root, split, "--resume", "--width", "64") == 2  # another network
    with open(split / "log.jsonl", "a") as handle:  # as if killed after logging epoch 2, before its checkpoint
        handle.write('{"epoch": 2, "total": 0.0}\n')
    assert _run(tiny_cifar_root, split, "--resume") == 0
    resumed = json.loads((split / "metrics.json").read_text())
    assert resumed["val"] == metrics["val"] and resumed["test"] == metrics["test"]
    assert (split / "relationship.csv").read_text() == (full / "relationship.csv").read_text()
    assert _epoch_log(split) == _epoch_log(full)  # same losses, M changes and val metrics, epoch by epoch


def test_runner_explains_an_empty_validation_split(tmp_path, capsys):
    root = tmp_path / "one_per_class"
    _write_cifar(root, n_train=1, n_test=1)
    assert _run(root, tmp_path / "out") == 2
    assert "validation split" in capsys.readouterr().err and not (tmp_path / "out" / "log.jsonl").exists()


def _rescored(root: Path, out: Path) -> dict[str, float]:
    """The test metrics recomputed in this process from the run's saved network and M."""
    bench = get_benchmark("cifar100")
    splits = bench.loader(root, seed=0)
    network, _ = build_network(bench.backbone, 20, width=TEST_WIDTH)
    network.load_state_dict(torch.load(out / "network.pt", map_location="cpu", weights_only=True))
    relationship = np.loadtxt(out / "relationship.csv", delimiter=",", skiprows=1, usecols=range(1, 21))
    stats = bench.stats or channel_stats(splits.train)
    views = make_views(splits.test, size=bench.image_size, augmentation=bench.augmentation, stats=stats, device="cpu")
    return evaluate(network, views, relationship.astype(np.int64), "cpu", False)


def _epoch_log(out: Path) -> list[dict]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.mark.slow
def test_runner_under_torchrun_with_two_processes(tiny_cifar_root, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    command += ["falcon_sc.image", "--dataset", "cifar100", "--root", str(tiny_cifar_root), "--out", str(out)]
    command += ["--epochs", "1", "--batch-size", "24", *SMALL_RUN]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # rank 0's report is what its saved network and M give on the whole test set (each rank saw half the data)
    assert metrics["test"] == pytest.approx(_rescored(tiny_cifar_root, out))
    assert len((out / "log.jsonl").read_text().splitlines()) == 1  # rank 0 alone writes
    relationship = np.loadtxt(out / "relationship.csv", delimiter=",", skiprows=1, usecols=range(1, 21))
    assert relationship.shape == (20, 20) and np.all(relationship.sum(1) == 1) and np.all(relationship.sum(0) >= 1)
