"""Fine-tuning recipe on a miniature k-fold dataset with a tiny SSAMBA: the training loss falls,
each fold writes a reloadable model, and results.json / results.md / confusion.png aggregate folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dataset_layouts import write_csv_dataset

from ssamba.data.manifests import read_csv_manifest
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, build_encoder, evaluate, finetune, load_finetuned
from ssamba.downstream.runs import plan_runs
from ssamba.errors import ConfigError
from ssamba.train.config import TrainConfig
from ssamba.train.metrics_log import read_metrics

TINY = dict(depth=2, embed_dim=32, scan_backend="chunked", drop_path_rate=0.0)


def train_config(steps: int) -> TrainConfig:
    """Full-batch steps (16 training clips per fold) so the logged loss is the training-set loss."""
    return TrainConfig(seed=0, epochs=100, max_steps=steps, batch_size=16, lr=3e-3, warmup_steps=0, schedule="constant",
                       num_workers=0, num_threads=1, progress=False, tensorboard=False, checkpoint_every=10_000,
                       device="cpu", weight_decay=0.0)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    csv_path = write_csv_dataset(root / "data", ["c0", "c1", "c2", "c3"], per_class=8, folds=2, seconds=1.2, spread=12)
    config = FinetuneConfig(dataset="csv", model="ssamba_tiny", fstride=16, tstride=16, loss="ce",
                            features="speechcommands", augment="none", model_overrides=TINY)
    torch.manual_seed(0)
    results = finetune(config, train_config(10), csv_path, root / "run")
    return root, csv_path, results


def test_training_loss_decreases(finetuned):
    root, _, _ = finetuned
    for fold in ("fold1", "fold2"):
        losses = [row["loss"] for row in read_metrics(root / "run" / fold / "metrics.csv")]
        assert len(losses) == 10
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses


def test_fold_results_are_aggregated_and_written(finetuned):
    root, _, results = finetuned
    assert set(results["runs"]) == {"fold1", "fold2"}
    accs = [results["runs"][f]["accuracy"] for f in ("fold1", "fold2")]
    assert results["aggregate"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert results["aggregate"]["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert np.array(results["confusion_matrix"]).sum() == 32  # every clip tested once across folds
    on_disk = json.loads((root / "run" / "results.json").read_text())
    assert on_disk["runs"] == results["runs"]
    md = (root / "run" / "results.md").read_text()
    assert "| fold1 |" in md and "| mean ± std |" in md
    assert (root / "run" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_reloads_the_same_models(finetuned):
    root, csv_path, results = finetuned
    task, meta = load_finetuned(root / "run" / "fold1" / "model")
    assert isinstance(task, FinetuneTask) and meta["class_names"] == ["c0", "c1", "c2", "c3"]
    again = evaluate(root / "run", csv_path, root / "eval")
    for fold in ("fold1", "fold2"):
        assert again["runs"][fold]["accuracy"] == pytest.approx(results["runs"][fold]["accuracy"])
    assert (root / "eval" / "results.md").is_file()


def test_head_is_layernorm_linear_and_param_groups():
    import ssamba

    encoder = ssamba.create_model("ssamba_tiny", **TINY)
    task = FinetuneTask(encoder, 5, head_lr_mult=3.0)
    assert isinstance(task.head.norm, torch.nn.LayerNorm) and task.head.linear.out_features == 5
    groups = task.param_groups()
    assert groups[1]["lr_scale"] == 3.0
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in task.parameters())
    fbank = torch.randn(2, 128, 128)
    torch.testing.assert_close(task.logits(fbank), task.head(encoder.pool(encoder.forward_features(fbank))))


def test_plan_runs_and_bad_config(tmp_path):
    csv_path = write_csv_dataset(tmp_path, ["a", "b"], per_class=2, folds=2, seconds=0.1)
    manifest = read_csv_manifest(csv_path)
    runs = plan_runs(manifest)
    assert [r[0] for r in runs] == ["fold1", "fold2"]
    assert all(len(train) == 2 and len(test) == 2 for _, train, _, test in runs)
    with pytest.raises(ConfigError, match="finetune.loss"):
        FinetuneConfig(loss="hinge")


def test_init_from_pretraining_grid_resizes_positional_embedding(tmp_path):
    """A stride-16, 1024-frame checkpoint loads into the stride-10 fine-tuning grid for 128 frames."""
    import ssamba
    from ssamba.nn.patch import resize_pos_embed

    torch.manual_seed(0)
    pretrained = ssamba.create_model("ssamba_tiny", **TINY)
    pretrained.save_pretrained(tmp_path / "ckpt")
    config = FinetuneConfig(fstride=10, tstride=10, model_overrides={"scan_backend": "chunked"})
    encoder = build_encoder(config, 128, init=tmp_path / "ckpt")
    assert encoder.training and (encoder.config.fstride, encoder.config.tstride, encoder.config.input_tdim) == (10, 10, 128)
    grid = encoder.patch_grid(128)
    assert grid == (12, 12)  # (128 - 16) // 10 + 1 patches along frequency and along time
    expected = resize_pos_embed(pretrained.pos_embed[:, 1:], pretrained.config.grid, grid)
    torch.testing.assert_close(encoder.pos_embed[:, 1:], expected)
    torch.testing.assert_close(encoder.cls_token, pretrained.cls_token)
    assert encoder(torch.randn(2, 128, 128)).shape == (2, 32)


def test_frozen_encoder_trains_only_the_head():
    import ssamba

    encoder = ssamba.create_model("ssamba_tiny", **TINY)
    task = FinetuneTask(encoder, 3, freeze_encoder=True).train()
    assert not encoder.training and task.head.training
    assert all(not p.requires_grad for p in encoder.parameters())
    out = task((torch.randn(2, 128, 128), torch.eye(3)[:2]))
    out["loss"].backward()
    assert task.head.linear.weight.grad is not None and encoder.pos_embed.grad is None


def test_probe_head_init_starts_where_the_probe_ends(finetuned, tmp_path):
    """LP-FT with mean‖std pooling on the same fold: the first training step's loss is the fitted
    probe's, well below a random head's (about ln 4 = 1.39 for 4 classes)."""
    root, csv_path, _ = finetuned
    config = FinetuneConfig(dataset="csv", model="ssamba_tiny", fstride=16, tstride=16, loss="ce", folds=[1],
                            features="speechcommands", augment="none", model_overrides=TINY,
                            head_init="probe", pooling="mean_std")
    torch.manual_seed(0)
    results = finetune(config, train_config(2), csv_path, tmp_path / "run")
    assert set(results["runs"]) == {"fold1"} and results["finetune"]["head_init"] == "probe"
    first = read_metrics(tmp_path / "run" / "fold1" / "metrics.csv")[0]["loss"]
    random_first = read_metrics(root / "run" / "fold1" / "metrics.csv")[0]["loss"]
    assert first < random_first - 0.3, (first, random_first)
    assert load_finetuned(tmp_path / "run" / "fold1" / "model")[0].pooling == "mean_std"
