"""The state of a training run: the divergence guard's last good state, what ``on_epoch_end`` receives, and
the complete state a run can be resumed from."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


#: Non-finite losses a run recovers from (each restores the last good state and halves the learning rate)
#: before it stops with an error.
MAX_RECOVERIES = 3


class DivergenceGuard:
    """Keeps the last good training state; restores it with a halved learning rate on a non-finite loss."""

    def __init__(self, max_recoveries: int = MAX_RECOVERIES):
        self.max_recoveries = max_recoveries
        self.recoveries = 0
        self.lr_scale = 1.0
        self._state = None

    def save(self, model, teacher, optimizer) -> None:
        # Saved at every checkpoint (every few steps): tensor clones cost a fraction of copy.deepcopy.
        self._state = _cloned((model.state_dict(), teacher.module.state_dict(), optimizer.state_dict()))

    def recover(self, model, teacher, optimizer, step: int) -> None:
        if self.recoveries >= self.max_recoveries:
            raise FloatingPointError(
                f"FALCON training diverged (non-finite loss at step {step}) and did not recover after "
                f"{self.max_recoveries} restarts with a halved learning rate. Lower `lr`, set `grad_clip`, "
                "or check the input for extreme values."
            )
        self.recoveries += 1
        self.lr_scale *= 0.5
        model_state, teacher_state, optimizer_state = self._state
        model.load_state_dict(model_state)
        teacher.module.load_state_dict(teacher_state)
        optimizer.load_state_dict(optimizer_state)
        logger.warning(
            "Non-finite loss at step %d: restored the last good state and halved the learning rate (%d/%d).",
            step,
            self.recoveries,
            self.max_recoveries,
        )


def _cloned(state):
    """A copy of a (nested) state dict whose tensors are cloned; numbers and strings are immutable and shared.
    The ``_metadata`` of a module's state dict (its version information) is kept."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        copied = type(state)((key, _cloned(value)) for key, value in state.items())
        if hasattr(state, "_metadata"):
            copied._metadata = copy.deepcopy(state._metadata)
        return copied
    if isinstance(state, (list, tuple)):
        return type(state)(_cloned(value) for value in state)
    return state


@dataclass
class TrainingProgress:
    """Where training stands after an epoch; what ``on_epoch_end`` receives.

    ``state_dict()`` is everything needed to continue exactly from here (pass it as ``resume``): networks,
    optimiser, random generator, M and the EMA predictions accumulated since the last solve, history.
    """

    epoch: int  # epochs completed
    epochs: int  # epochs in total
    relationship: np.ndarray
    history: dict[str, list[float]]
    teacher: torch.nn.Module
    state_dict: Callable[[], dict[str, Any]]


def snapshot(
    *, model, teacher, optimizer, generator, relationship, prob_sums, group_counts, history, guard, counters
) -> dict[str, Any]:
    """Everything needed to continue a run exactly from here (what ``resume`` takes): networks, optimiser,
    random generator, M, the EMA predictions accumulated since the last solve, history and counters."""
    return copy.deepcopy(
        {
            **counters,
            "relationship": relationship,
            "recoveries": guard.recoveries,
            "lr_scale": guard.lr_scale,
            "model": model.state_dict(),
            "teacher": teacher.module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "prob_sums": prob_sums,
            "group_counts": group_counts,
            "history": dict(history),
        }
    )


def restore(state, *, model, teacher, optimizer, generator, prob_sums, group_counts, history, guard) -> dict:
    """Load a :func:`snapshot` into a run's objects (tensors in place); returns M and the counters."""
    model.load_state_dict(state["model"])
    teacher.module.load_state_dict(state["teacher"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    prob_sums.copy_(state["prob_sums"])
    group_counts.copy_(state["group_counts"])
    history.update({name: list(values) for name, values in state["history"].items()})
    guard.recoveries, guard.lr_scale = state["recoveries"], state["lr_scale"]
    counters = {k: state[k] for k in ("n_solves", "solve_time", "step", "epoch")}
    return {"relationship": np.asarray(state["relationship"], dtype=np.int8), **counters}
