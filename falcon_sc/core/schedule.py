"""The training schedule in optimisation steps, derived from a config and the number of cells."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import FalconConfig


@dataclass(frozen=True)
class Schedule:
    """How many steps to take, in what batches, and when each phase ends.

    The small-data rule: ``batch_size = min(config.batch_size, n_cells // config.min_steps_per_epoch)``
    and ``steps_per_epoch = max(1, n_cells // batch_size)``; epochs are then added until
    ``epochs · steps_per_epoch ≥ config.min_total_steps``. M is re-solved every
    ``min(config.solve_every, steps_per_epoch // config.min_solves_per_epoch)`` steps (at least every step).
    Phase boundaries (soft targets, balance weight, λ3 relaxation, learning-rate milestones) are fractions of
    all steps.
    """

    batch_size: int
    steps_per_epoch: int
    epochs: int
    solve_every: int
    soft_steps: int
    first_solve_step: int
    lr_milestone_steps: tuple[int, ...]
    lambda_reg_soft: float
    lambda_reg_hard: float

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @classmethod
    def build(cls, config: FalconConfig, n_cells: int) -> Schedule:
        if n_cells < 1:
            raise ValueError("Cannot train on zero cells.")
        batch_size = max(1, min(config.batch_size, n_cells // max(1, config.min_steps_per_epoch)))
        steps_per_epoch = max(1, n_cells // batch_size)
        epochs = max(config.epochs, math.ceil(config.min_total_steps / steps_per_epoch))
        total = epochs * steps_per_epoch
        solve_every = max(1, min(config.solve_every, steps_per_epoch // max(1, config.min_solves_per_epoch)))
        return cls(
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            solve_every=solve_every,
            soft_steps=round(config.soft_target_fraction * total),
            first_solve_step=round(config.first_solve_fraction * total),
            lr_milestone_steps=tuple(round(m * total) for m in config.lr_milestones),
            lambda_reg_soft=config.lambda_reg,
            lambda_reg_hard=config.lambda_reg if config.lambda_reg_hard is None else config.lambda_reg_hard,
        )

    def hardness(self, step: int) -> float:
        """Weight of the one-hot target: 0 → 1 along a half cosine over the soft-target phase."""
        if step >= self.soft_steps:
            return 1.0
        return 0.5 * (1.0 - math.cos(math.pi * step / self.soft_steps))

    def solves_at(self, step: int) -> bool:
        """Whether M is re-solved after ``step`` (0-based)."""
        return step >= self.first_solve_step and (step + 1) % self.solve_every == 0

    def in_soft_phase(self, step: int) -> bool:
        return step < self.soft_steps

    def lambda_reg(self, step: int) -> float:
        """λ3 at ``step``: relaxed to ``lambda_reg_hard`` once targets are hard, so boundaries between
        unequal subtypes settle where the data put them rather than where the prior would."""
        return self.lambda_reg_soft if self.in_soft_phase(step) else self.lambda_reg_hard

    def lr_factor(self, step: int, gamma: float) -> float:
        return gamma ** sum(step >= m for m in self.lr_milestone_steps)
