"""Which fine-tuned weights score the test set, as the official recipes choose them.

- ``last``: the weights of the last step.
- ``best``: the epoch with the best validation score (the official Speech Commands recipe saves
  ``best_audio_model.pth`` when validation accuracy improves and scores the test set with it).
- ``average``: the mean of the weights at the end of epochs ``wa_start``..``wa_end`` (the official
  AudioSet recipe, ``--wa True --wa_start 12 --wa_end 40``).

An :class:`EpochSelector` is the Trainer's ``on_epoch_end`` callback; it keeps the chosen weights
in memory (one extra copy of the task's state) and :meth:`EpochSelector.apply` loads them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from ssamba.errors import ConfigError, TrainingError
from ssamba.train.metrics_log import append_csv

log = logging.getLogger(__name__)

SELECTIONS = ("last", "best", "average")
VALID_FILE = "valid.csv"


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class EpochSelector:
    """Epoch-end bookkeeping for one fine-tuning run (see the module docstring).

    ``score``: returns the validation metrics of the task as it is now (needed for ``best``);
    ``metric``: the key of those metrics to maximise; ``log_dir``: where ``valid.csv`` (one row per
    epoch) is written by rank 0.
    """

    def __init__(self, task: nn.Module, select: str = "last", score: Callable[[], dict] | None = None,
                 metric: str = "accuracy", wa_start: int = 12, wa_end: int = 40,
                 log_dir: str | Path | None = None) -> None:
        if select not in SELECTIONS:
            raise ConfigError(f"finetune.select={select!r}: must be one of {', '.join(SELECTIONS)}")
        if select == "best" and score is None:
            raise ConfigError("finetune.select=best: the dataset has no validation split to choose the epoch on")
        if select == "average" and not 1 <= wa_start <= wa_end:
            raise ConfigError(f"finetune.wa_start={wa_start}, wa_end={wa_end}: need 1 <= wa_start <= wa_end")
        self.task, self.select, self.score, self.metric = task, select, score, metric
        self.wa_start, self.wa_end = wa_start, wa_end
        self.log_dir = Path(log_dir) if log_dir else None
        self.history: list[dict[str, float]] = []
        self.best_value, self.best_epoch = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.sum_state: dict[str, torch.Tensor] | None = None
        self.averaged: list[int] = []

    def __call__(self, epoch: int) -> None:
        """Record the end of ``epoch`` (1-based): score it, keep it if best, add it to the average."""
        if self.score is not None:
            metrics = self.score()
            if self.metric not in metrics:
                raise ConfigError(f"finetune.select_metric={self.metric!r}: validation reports "
                                  f"{', '.join(sorted(metrics))}")
            self.history.append({"epoch": epoch, **metrics})
            if self.log_dir is not None and _is_main():
                self.log_dir.mkdir(parents=True, exist_ok=True)
                append_csv(self.log_dir / VALID_FILE, {"epoch": epoch, **metrics})
            if self.select == "best" and metrics[self.metric] > self.best_value:
                self.best_value, self.best_epoch = float(metrics[self.metric]), epoch
                self.best_state = _snapshot(self.task)
        if self.select == "average" and self.wa_start <= epoch <= self.wa_end:
            state = _snapshot(self.task)
            if self.sum_state is None:
                self.sum_state = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
            else:
                for k, v in state.items():
                    self.sum_state[k] = self.sum_state[k] + v.double() if v.is_floating_point() else v
            self.averaged.append(epoch)

    def apply(self) -> dict:
        """Load the chosen weights into the task; returns what was chosen (for results.json)."""
        if self.select == "best":
            if self.best_state is None:
                raise TrainingError("finetune.select=best: no epoch finished, so none was scored on validation")
            self.task.load_state_dict(self.best_state)
            log.info("scoring the best validation epoch %d (%s %.4f)", self.best_epoch, self.metric, self.best_value)
            return {"select": "best", "epoch": self.best_epoch, f"valid_{self.metric}": self.best_value}
        if self.select == "average":
            if self.sum_state is None:
                raise TrainingError(f"finetune.select=average: no epoch in wa_start..wa_end = "
                                    f"{self.wa_start}..{self.wa_end} finished")
            current = self.task.state_dict()
            n = len(self.averaged)
            self.task.load_state_dict({k: (v / n).to(current[k].dtype) if v.is_floating_point() else v
                                       for k, v in self.sum_state.items()})
            log.info("scoring the mean weights of epochs %d-%d", self.averaged[0], self.averaged[-1])
            return {"select": "average", "epochs": [self.averaged[0], self.averaged[-1]], "count": n}
        return {"select": "last"}
