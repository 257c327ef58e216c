"""The bundled recipes carry the official values a user compares with the paper."""

from __future__ import annotations

import pytest

from ssamba.train.config import load_yaml

PAPER_PRETRAINING = [f"{arch}_{size}" for arch in ("ssamba", "ssast") for size in ("tiny", "small", "base")]


@pytest.mark.parametrize("name", PAPER_PRETRAINING)
def test_paper_pretraining_recipes_are_official(name):
    recipe = load_yaml(name)
    train = recipe["train"]
    # official pretraining: fp32, Adam-style betas (0.95, 0.999), lr 1e-4, 64 clips per step, LR halving
    assert train["precision"] == "fp32"
    assert train["lr"] == pytest.approx(1e-4) and train["batch_size"] == 64
    assert list(train["betas"]) == [0.95, 0.999] and train["schedule"] == "plateau"
    assert recipe["data"]["crop_frames"] == 1024
    # 64 clips per step in all (divided over torchrun processes)
    assert train["global_batch"] is True
    # LR halving and best follow the validation masked-patch accuracy with 400 masks, every 4000 steps
    assert train["monitor"] == "acc" and train["monitor_mode"] == "max" and train["plateau_every"] == 4000
    assert recipe["pretrain"]["valid_num_masked"] == 400 and recipe["data"]["valid_clips"] > 0
    assert train["plateau_factor"] == 0.5 and train["plateau_patience"] == 2


@pytest.mark.parametrize("name", PAPER_PRETRAINING + ["ssamba_tiny_cpu", "ssast_tiny_cpu"])
def test_pretraining_recipes_build(name):
    from ssamba.pretrain.run import DataConfig, load_run_config
    from ssamba.pretrain.task import MaskedPatchConfig
    from ssamba.train.config import TrainConfig

    run = load_run_config(name)  # every section validates
    TrainConfig(**run["train"]), MaskedPatchConfig(**run["pretrain"]), DataConfig(**run["data"])



def test_speechcommands_scores_the_best_validation_epoch():
    from ssamba.downstream.finetune import load_finetune_config

    for name in ("speechcommands_v1", "speechcommands_v2"):
        finetune, train = load_finetune_config(name)
        assert finetune.select == "best" and finetune.select_metric == "accuracy"
        assert train.batch_size == 128 and train.global_batch and train.epochs == 30


def test_audioset_averages_the_weights_of_epochs_12_to_40():
    from ssamba.downstream.finetune import load_finetune_config

    finetune, train = load_finetune_config("audioset_20k")
    assert (finetune.select, finetune.wa_start, finetune.wa_end) == ("average", 12, 40)
    assert train.epochs >= finetune.wa_end and train.batch_size == 24 and train.global_batch


@pytest.mark.parametrize("name", ["voxceleb1", "iemocap"])
def test_s3prl_tasks_follow_the_official_setup(name):
    """run_sid.sh / run_er.sh: s3prl -f (encoder fine-tuned), -s hidden_states (weighted sum of all
    layers), stride 10; the frozen last-layer probe is a separately named recipe."""
    from ssamba.downstream.finetune import load_finetune_config

    finetune, train = load_finetune_config(name)
    assert finetune.freeze_encoder is False and finetune.layers == "weighted_sum"
    assert finetune.eval_chunks is True and finetune.features == "audioset"  # whole utterances, 10.24 s chunks
    assert (finetune.fstride, finetune.tstride) == (10, 10)
    assert train.lr == pytest.approx(1e-4) and train.grad_clip == 1.0
    assert finetune.select == ("best" if name == "voxceleb1" else "last")  # VoxCeleb1 has a validation split
    frozen, _ = load_finetune_config(f"{name}_frozen")
    assert frozen.freeze_encoder is True and frozen.layers == "last"
    assert (frozen.fstride, frozen.tstride) == (16, 16) and frozen.dataset == finetune.dataset


@pytest.mark.parametrize("name,start,step,decay", [
    ("esc50", 6, 1, 0.85), ("speechcommands_v1", 5, 1, 0.85), ("speechcommands_v2", 5, 1, 0.85),
    ("audioset_20k", 15, 10, 0.75)])
def test_finetuning_uses_the_official_optimizer_and_step_decay(name, start, step, decay):
    """run_esc_patch_amba.sh / run_sc_amba.sh / run_as_amba.sh: Adam (wd 5e-7), MultiStepLR per epoch."""
    from ssamba.downstream.finetune import load_finetune_config

    _, train = load_finetune_config(name)
    assert train.optimizer == "adam" and train.weight_decay == pytest.approx(5e-7)
    assert list(train.betas) == [0.95, 0.999] and train.schedule == "step"
    assert (train.lrscheduler_start, train.lrscheduler_step, train.lrscheduler_decay) == (start, step, decay)


@pytest.mark.parametrize("name", ["voxceleb1", "iemocap"])
def test_s3prl_tasks_use_s3prls_optimizer(name):
    from ssamba.downstream.finetune import load_finetune_config

    _, train = load_finetune_config(name)
    assert train.optimizer == "adam" and train.weight_decay == 0.0 and train.schedule == "constant"
    assert list(train.betas) == [0.9, 0.999]
