"""Validation-driven training control: the monitored eval metric (min or max) drives plateau halving
and the ``best`` checkpoint; a global ``batch_size`` is split over the processes."""

import pytest
import torch
from torch import nn

from ssamba.errors import ConfigError
from ssamba.train.checkpointing import load_checkpoint
from ssamba.train.config import TrainConfig
from ssamba.train.distributed import per_process_batch
from ssamba.train.trainer import Trainer


class _ScriptedEval(nn.Module):
    """Trains a scalar; in eval mode reports the next value of a scripted ``acc`` sequence."""

    def __init__(self, accs):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.accs, self.evals = list(accs), 0

    def forward(self, batch):
        loss = (self.w - batch["x"].mean()).pow(2).sum()
        if self.training:
            return {"loss": loss}
        self.evals += 1
        return {"loss": loss.detach() * 0 + self.evals, "acc": torch.tensor(self.accs[self.evals - 1])}


class _Ones(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        return {"x": torch.full((2,), float(index))}


def _cfg(**kw):
    base = dict(max_steps=12, epochs=100, batch_size=4, lr=1.0, warmup_steps=0, num_workers=0, progress=False,
                num_threads=1, plateau_every=2, plateau_patience=1, checkpoint_every=100, keep_last=10,
                tensorboard=False)
    return TrainConfig(**{**base, **kw})


def test_max_monitor_picks_the_highest_eval_metric_and_halves_lr(tmp_path):
    # checks at steps 2, 4, ..., 12: acc peaks at the 2nd check (step 4); loss rises every check, so a
    # "min loss" monitor would pick step 2 and a last-step choice step 12
    accs = [0.1, 0.9, 0.5, 0.4, 0.3, 0.2]
    task = _ScriptedEval(accs)
    trainer = Trainer(task, _Ones(), _cfg(monitor="acc", monitor_mode="max"), tmp_path, eval_data=_Ones())
    trainer.fit()
    assert task.evals == 6
    _, _, state = load_checkpoint(tmp_path / "checkpoints" / "best")
    assert state["step"] == 4
    # patience 1: halves after the 2nd check without improvement (steps 6, 8), again after 10, 12
    assert trainer.schedule.scale == pytest.approx(0.25)
    assert trainer.schedule.best == pytest.approx(-0.9)


def test_unknown_monitor_names_the_setting(tmp_path):
    trainer = Trainer(_ScriptedEval([0.5] * 6), _Ones(), _cfg(monitor="mAP"), tmp_path, eval_data=_Ones())
    with pytest.raises(ConfigError, match="train.monitor='mAP'.*acc, loss"):
        trainer.fit()


def test_monitor_mode_is_checked():
    with pytest.raises(ConfigError, match="monitor_mode"):
        TrainConfig(monitor_mode="up")


def test_global_batch_is_divided_by_world_size():
    assert per_process_batch(64, 4, global_batch=True) == 16
    assert per_process_batch(64, 4, global_batch=False) == 64
    assert per_process_batch(6, 1, global_batch=True) == 6
    with pytest.raises(ConfigError, match=r"train.batch_size=6: .*divide by the 4 processes"):
        per_process_batch(6, 4, global_batch=True)
