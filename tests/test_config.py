"""FalconConfig checks every option when it is built, so a bad value fails before any work."""

import dataclasses
import typing

import pytest

from falcon_sc.core import FalconConfig
from falcon_sc.core.config import PRESETS, get_config
from falcon_sc.image.benchmarks import VISION, VISION_DELAYED_M


def test_every_preset_is_valid():
    for config in [*PRESETS.values(), VISION, VISION_DELAYED_M]:
        assert FalconConfig(**dataclasses.asdict(config)) == config


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(FalconConfig)])
def test_every_option_refuses_a_value_of_the_wrong_kind(field):
    kind = typing.get_type_hints(FalconConfig)[field]
    wrong = 3 if typing.get_origin(kind) is typing.Literal else "abc"
    with pytest.raises(ValueError, match=rf"Option {field}\b"):
        get_config("default", **{field: wrong})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(epochs=0), r"epochs=0 is out of range; it must lie in \[1, inf\]"),
        (dict(lr=0), r"lr=0.0 is out of range; it must lie in \(0, inf\]"),
        (dict(ema_decay=1.5), r"ema_decay=1.5 is out of range"),
        (dict(lr_milestones=(0.6, 1.0)), r"lr_milestones=1.0 is out of range"),
        (dict(n_pcs=2.5), "Option n_pcs expects an integer; got 2.5"),
        (dict(grad_clip=float("inf")), "Option grad_clip expects a number; got inf"),
        (dict(cuda_graphs="yes"), "Option cuda_graphs expects True or False"),
        (dict(warm_start="cold"), "choose one of 'none', 'kmeans', 'alternate'"),
        (dict(n_sampled_neighbors=30), "n_sampled_neighbors=30 exceeds n_neighbors=20"),
    ],
)
def test_ranges_and_relations_are_checked(changes, match):
    with pytest.raises(ValueError, match=match):
        get_config("default", **changes)


def test_numbers_are_normalised():
    config = get_config("default", lr=1, lr_milestones=[0.5], grad_clip=None, n_pcs=None)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.lr_milestones == (0.5,) and config.grad_clip is None
    assert get_config("default", epochs=12.0).epochs == 12  # an integral float read from a CLI is accepted
