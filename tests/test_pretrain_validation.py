"""A validation split for pretraining: held-out clips (or a folder), masked with ``valid_num_masked``,
scored at every plateau check; ``train.monitor=acc`` makes it drive LR halving and ``best``."""

import pytest
import torch
from pretrain_helpers import tiny_encoder
from test_resume import make_audio_folder

from ssamba.errors import ConfigError
from ssamba.pretrain.run import DataConfig, build_datasets, run_pretraining
from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining
from ssamba.train.checkpointing import load_checkpoint
from ssamba.train.metrics_log import read_metrics

FAST = ["model.overrides.depth=2", "model.overrides.embed_dim=32", "data.crop_frames=64", "pretrain.num_masked=8",
        "train.batch_size=2", "train.max_steps=6", "train.warmup_steps=0", "train.num_workers=0",
        "train.progress=false", "train.num_threads=1", "train.tensorboard=false", "train.checkpoint_every=100"]


def test_held_out_clips_are_disjoint_and_fixed(tmp_path):
    data = make_audio_folder(tmp_path / "audio", n=10, seconds=0.5)
    train, valid = build_datasets(data, DataConfig(crop_frames=32, valid_clips=3), seed=5)
    again_train, again_valid = build_datasets(data, DataConfig(crop_frames=32, valid_clips=3), seed=5)
    assert len(train) == 7 and len(valid) == 3 and not set(train.files) & set(valid.files)
    assert valid.files == again_valid.files and train.files == again_train.files
    assert build_datasets(data, DataConfig(crop_frames=32), seed=5)[1] is None
    other = make_audio_folder(tmp_path / "valid", n=2, seconds=0.5, seed=1)
    whole, own = build_datasets(data, DataConfig(crop_frames=32, valid=str(other), valid_clips=3), seed=5)
    assert len(whole) == 10 and sorted(own.files) == sorted(other.glob("*.flac"))  # nothing held out
    with pytest.raises(ConfigError, match="data.valid_clips=10: .* has only 10 clips"):
        build_datasets(data, DataConfig(crop_frames=32, valid_clips=10), seed=5)


def test_eval_mode_masks_valid_num_masked_patches():
    task = MaskedPatchPretraining(tiny_encoder(), MaskedPatchConfig(num_masked=4, valid_num_masked=20,
                                                                    objective="nce"))
    seen = []
    task.cpredlayer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    fbank = torch.randn(2, 64, 128)  # 8 x 4 = 32 patches
    task.train()(fbank)
    task.eval()(fbank)
    assert seen == [4, 20]


def test_run_pretraining_hands_the_split_to_the_trainer(tmp_path, monkeypatch):
    import ssamba.pretrain.run as run

    seen = {}

    class Recorder:
        def __init__(self, task, data, config, out_dir, eval_data=None, run_config=None):
            seen.update(train=data, valid=eval_data, config=config, task=task)

        def fit(self, resume=False):
            return {}

    monkeypatch.setattr(run, "Trainer", Recorder)
    data = make_audio_folder(tmp_path / "audio", n=6, seconds=0.5)
    run_pretraining("ssamba_tiny_cpu", data, tmp_path / "run", overrides=FAST + [
        "data.valid_clips=2", "pretrain.valid_num_masked=12", "train.monitor=acc", "train.monitor_mode=max"])
    assert len(seen["train"]) == 4 and len(seen["valid"]) == 2
    assert seen["config"].monitor == "acc" and seen["task"].config.valid_num_masked == 12
    # an objective that reports no accuracy is refused before training, not at the first check
    with pytest.raises(ConfigError, match="train.monitor='acc': pretrain.objective=mse reports loss, mse"):
        run_pretraining("ssamba_tiny_cpu", data, tmp_path / "run2", overrides=FAST + [
            "data.valid_clips=2", "pretrain.objective=mse", "train.monitor=acc"])


@pytest.mark.slow
def test_validation_accuracy_drives_best_and_is_logged(tmp_path):
    data = make_audio_folder(tmp_path / "audio", n=8, seconds=0.8)
    out = tmp_path / "run"
    run_pretraining("ssamba_tiny_cpu", data, out, overrides=FAST + [
        "data.valid_clips=2", "pretrain.valid_num_masked=12", "train.plateau_every=2", "train.monitor=acc",
        "train.monitor_mode=max"])
    rows = read_metrics(out / "eval.csv")
    assert [r["step"] for r in rows] == [2, 4, 6] and all(0 <= r["acc"] <= 1 for r in rows)
    _, config, state = load_checkpoint(out / "checkpoints" / "best")
    accs = [r["acc"] for r in rows]
    best_step = rows[accs.index(max(accs))]["step"]  # first of ties: a later equal value is no improvement
    assert state["step"] == best_step
    assert config["data"]["valid_clips"] == 2 and config["train"]["monitor"] == "acc"


def test_streamed_shards_need_their_own_validation_set(tmp_path):
    from ssamba.data.shards import write_shards

    data = make_audio_folder(tmp_path / "audio", n=3, seconds=0.5)
    write_shards(data, tmp_path / "shards", max_per_shard=2)
    with pytest.raises(ConfigError, match="streamed \\(shards\\); give data.valid=FOLDER"):
        build_datasets(tmp_path / "shards", DataConfig(crop_frames=32, valid_clips=2), seed=0)
    _, valid = build_datasets(tmp_path / "shards", DataConfig(crop_frames=32, valid=str(data)), seed=0)
    assert len(valid) == 3
