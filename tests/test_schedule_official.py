"""The official fine-tuning optimiser and LR decay: Adam (L2 weight decay) and a per-epoch step decay
that matches torch's MultiStepLR stepped once per epoch, as the official training loop does."""

import pytest
import torch

from ssamba.errors import ConfigError
from ssamba.train.config import TrainConfig
from ssamba.train.schedule import LRSchedule


def _official_lrs(lr, start, step, decay, epochs):
    """LR of each epoch (1-based) in the official loop: MultiStepLR(range(start, 1000, step)), step() per epoch."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(start, 1000, step)), gamma=decay)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("start,step,decay", [(5, 1, 0.85), (6, 1, 0.85), (15, 10, 0.75)])
def test_step_decay_matches_the_official_multistep(start, step, decay):
    config = TrainConfig(lr=2.5e-4, warmup_steps=0, schedule="step", lrscheduler_start=start,
                         lrscheduler_step=step, lrscheduler_decay=decay)
    per_epoch = 7
    schedule = LRSchedule(config, total_steps=50 * per_epoch, steps_per_epoch=per_epoch)
    ours = [schedule.lr(e * per_epoch + i) for e in range(50) for i in range(per_epoch)]
    official = _official_lrs(2.5e-4, start, step, decay, 50)
    assert ours == pytest.approx([lr for lr in official for _ in range(per_epoch)], rel=1e-9)
    assert official[0] > official[-1]  # the case decays


def test_step_decay_keeps_the_warm_up():
    config = TrainConfig(lr=1.0, warmup_steps=4, schedule="step", lrscheduler_start=1, lrscheduler_decay=0.5)
    schedule = LRSchedule(config, total_steps=100, steps_per_epoch=10)
    assert [schedule.lr(s) for s in (0, 3, 9, 10, 20)] == pytest.approx([0.25, 1.0, 1.0, 0.5, 0.25])


def test_step_decay_needs_an_epoch_length_and_valid_settings():
    with pytest.raises(ConfigError, match="train.schedule=step: .*streamed"):
        LRSchedule(TrainConfig(schedule="step"), total_steps=10)
    with pytest.raises(ConfigError, match="lrscheduler"):
        TrainConfig(lrscheduler_decay=0.0)
    with pytest.raises(ConfigError, match="train.optimizer='sgd'"):
        TrainConfig(optimizer="sgd")


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_trainer_builds_the_named_optimizer(tmp_path, name, cls):
    from test_selection import _Pairs, _Regress

    from ssamba.train.trainer import Trainer

    config = TrainConfig(max_steps=2, epochs=1, batch_size=4, warmup_steps=0, schedule="step", lrscheduler_start=1,
                         optimizer=name, num_workers=0, progress=False, num_threads=1, tensorboard=False,
                         device="cpu", checkpoint_every=100)
    trainer = Trainer(_Regress(), _Pairs(), config, tmp_path)
    trainer.fit()
    assert type(trainer.optimizer) is cls
