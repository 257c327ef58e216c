"""`train.max_minutes`: the demo's wall-clock budget for pretraining (Trainer stops on time, mid-epoch,
and a resume continues from exactly where it stopped)."""

import time

import pytest
import torch
from pretrain_helpers import SyntheticFbankDataset, tiny_encoder

from ssamba.errors import ConfigError
from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining
from ssamba.train.checkpointing import load_checkpoint
from ssamba.train.config import TrainConfig
from ssamba.train.metrics_log import read_metrics
from ssamba.train.trainer import Trainer


class SlowDataset(SyntheticFbankDataset):
    """Each item takes 20 ms, so steps take a known minimum time."""

    def __getitem__(self, key):
        time.sleep(0.02)
        return super().__getitem__(key)


def _cfg(**kw):
    base = dict(max_steps=10_000, epochs=1000, batch_size=2, lr=1e-3, warmup_steps=1, num_workers=0,
                checkpoint_every=10_000, progress=False, num_threads=1, plateau_every=10_000)
    return TrainConfig(**{**base, **kw})


def _task():
    return MaskedPatchPretraining(tiny_encoder(seed=0), MaskedPatchConfig(num_masked=16), seed=0)


def test_max_minutes_stops_on_time_mid_epoch_and_resume_continues(tmp_path):
    torch.manual_seed(0)
    budget_s = 1.5
    start = time.time()
    summary = Trainer(_task(), SlowDataset(64), _cfg(max_minutes=budget_s / 60), tmp_path).fit()
    took = time.time() - start
    steps = summary["steps"]
    assert 0 < steps < 10_000 and budget_s <= took < budget_s + 10
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[-1]["step"] == steps and rows[-1]["elapsed_s"] >= budget_s
    _, _, state = load_checkpoint(tmp_path)
    assert state["step"] == steps
    per_epoch = 64 // 2
    assert state["epoch"] == steps // per_epoch and state["batch_in_epoch"] == steps % per_epoch  # position kept
    again = Trainer(_task(), SlowDataset(64), _cfg(max_minutes=budget_s / 60), tmp_path).fit(resume=True)
    assert again["steps"] > steps


@pytest.mark.parametrize("bad", [0, -1.0])
def test_max_minutes_must_be_positive(bad):
    with pytest.raises(ConfigError, match="max_minutes"):
        _cfg(max_minutes=bad)
