"""Which fine-tuned weights score the test set: the best validation epoch (not the last) and the mean
of the weights over an epoch range, recorded through the Trainer's epoch-end callback."""

import csv

import pytest
import torch
from torch import nn

from ssamba.downstream.finetune import FinetuneConfig
from ssamba.downstream.selection import EpochSelector
from ssamba.errors import ConfigError, TrainingError
from ssamba.train.config import TrainConfig
from ssamba.train.trainer import Trainer


class _Regress(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, batch):
        return {"loss": (self.lin(batch["x"]) - batch["y"]).pow(2).mean()}


class _Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        x = torch.linspace(-1, 1, 4) * (index + 1) / 8
        return {"x": x, "y": x.sum(0, keepdim=True)}


def _cfg(**kw):
    base = dict(epochs=4, batch_size=4, lr=0.05, warmup_steps=0, schedule="constant", num_workers=0, progress=False,
                num_threads=1, tensorboard=False, checkpoint_every=1000, plateau_every=1000, device="cpu")
    return TrainConfig(**{**base, **kw})


def _train_with(selector_args, tmp_path, **cfg):
    """Train 4 epochs of 2 steps; the validation score is scripted per epoch (best: epoch 2)."""
    task = _Regress()
    snapshots, ends = {}, []
    scripted = {1: 0.2, 2: 0.9, 3: 0.5, 4: 0.7}

    def score():
        epoch = len(ends) + 1
        return {"accuracy": scripted[epoch], "macro_f1": 0.0}

    selector = EpochSelector(task, score=score, log_dir=tmp_path, **selector_args)

    def on_epoch_end(epoch):
        snapshots[epoch] = {k: v.clone() for k, v in task.state_dict().items()}
        selector(epoch)
        ends.append(epoch)

    Trainer(task, _Pairs(), _cfg(**cfg), tmp_path, on_epoch_end=on_epoch_end).fit()
    return task, selector, snapshots, ends


def test_best_validation_epoch_is_scored_not_the_last(tmp_path):
    task, selector, snapshots, ends = _train_with({"select": "best"}, tmp_path)
    assert ends == [1, 2, 3, 4]  # the last epoch, ended by the step budget, is recorded too
    assert not torch.equal(snapshots[2]["lin.weight"], snapshots[4]["lin.weight"])
    chosen = selector.apply()
    assert chosen == {"select": "best", "epoch": 2, "valid_accuracy": pytest.approx(0.9)}
    for k, v in task.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k
    with (tmp_path / "valid.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and float(rows[1]["accuracy"]) == pytest.approx(0.9)


def test_best_epoch_under_max_steps_mid_epoch(tmp_path):
    # 5 steps = 2 whole epochs and half of the 3rd: only epochs 1, 2 end
    _, selector, _, ends = _train_with({"select": "best"}, tmp_path, max_steps=5)
    assert ends == [1, 2] and selector.apply()["epoch"] == 2


def test_weights_are_averaged_over_the_epoch_range(tmp_path):
    task, selector, snapshots, _ = _train_with({"select": "average", "wa_start": 2, "wa_end": 3}, tmp_path)
    assert selector.apply() == {"select": "average", "epochs": [2, 3], "count": 2}
    for k, v in task.state_dict().items():
        assert torch.allclose(v, (snapshots[2][k] + snapshots[3][k]) / 2, atol=1e-7), k
        assert not torch.allclose(v, snapshots[4][k])


def test_selection_errors():
    task = _Regress()
    with pytest.raises(ConfigError, match="no validation split"):
        EpochSelector(task, "best")
    with pytest.raises(ConfigError, match="finetune.select='first'"):
        FinetuneConfig(select="first")
    with pytest.raises(TrainingError, match="no epoch in wa_start..wa_end = 12..40"):
        EpochSelector(task, "average").apply()
    selector = EpochSelector(task, "best", score=lambda: {"accuracy": 1.0}, metric="mAP")
    with pytest.raises(ConfigError, match="select_metric='mAP'.*accuracy"):
        selector(1)
