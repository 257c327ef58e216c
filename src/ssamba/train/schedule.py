"""The learning rate per optimizer step: linear warm-up, then plateau halving, cosine decay or the
official fine-tuning step decay (x ``lrscheduler_decay`` at the start of epoch ``lrscheduler_start``
+ 1 and every ``lrscheduler_step`` epochs after, counted from 0 as the official ``MultiStepLR``
stepped once per epoch).

Plateau halving follows a monitored value (lower is better: the Trainer negates a metric that
should rise, such as the validation masked-patch accuracy) checked every ``plateau_every`` steps.
"""

from __future__ import annotations

import math
from typing import Any

from ssamba.errors import ConfigError
from ssamba.train.config import TrainConfig


class LRSchedule:
    """Learning rate per optimizer step: linear warm-up, then plateau halving, cosine or step decay.
    ``steps_per_epoch``: optimizer steps in one epoch (needed by the step decay only)."""

    def __init__(self, config: TrainConfig, total_steps: int, steps_per_epoch: int | None = None) -> None:
        self.config, self.total_steps = config, max(1, total_steps)
        self.steps_per_epoch = steps_per_epoch
        if config.schedule == "step" and not steps_per_epoch:
            raise ConfigError("train.schedule=step: decays per epoch, so it needs map-style data with a known epoch "
                              "length (not a streamed dataset)")
        self.scale = 1.0          # plateau multiplier
        self.best = math.inf      # best monitored value seen at a plateau check
        self.bad_checks = 0

    def lr(self, step: int) -> float:
        """LR for the optimizer step that follows ``step`` completed steps."""
        c = self.config
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
        if c.schedule == "cosine" and step >= c.warmup_steps:
            span = max(1, self.total_steps - c.warmup_steps)
            progress = min(1.0, (step - c.warmup_steps) / span)
            return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        if c.schedule == "step":
            epoch = step // self.steps_per_epoch  # 0-based epoch of this step
            decays = 0 if epoch < c.lrscheduler_start else (epoch - c.lrscheduler_start) // c.lrscheduler_step + 1
            return c.lr * warm * c.lrscheduler_decay ** decays
        return max(c.min_lr, c.lr * warm * self.scale) if c.schedule == "plateau" else c.lr * warm

    def observe(self, value: float) -> bool:
        """Record a monitored loss; halves the LR after ``plateau_patience`` checks without improvement.
        Returns True when ``value`` is the best so far."""
        improved = value < self.best
        if improved:
            self.best, self.bad_checks = value, 0
        else:
            self.bad_checks += 1
            if self.config.schedule == "plateau" and self.bad_checks > self.config.plateau_patience:
                self.scale *= self.config.plateau_factor
                self.bad_checks = 0
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_checks": self.bad_checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.best, self.bad_checks = float(state["scale"]), float(state["best"]), int(state["bad_checks"])
