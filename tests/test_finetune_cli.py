"""`ssamba finetune / evaluate / probe` end to end on a miniature dataset, and the recipe configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from dataset_layouts import write_csv_dataset

from ssamba.cli import main
from ssamba.downstream.finetune import load_finetune_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "finetune"


@pytest.mark.parametrize("name,dataset,lr,batch,epochs,loss,masks,mixup", [
    ("esc50", "esc50", 1e-4, 48, 50, "ce", (24, 96), 0.0),
    ("speechcommands_v1", "speechcommands_v1", 2.5e-4, 128, 30, "bce", (48, 48), 0.6),
    ("speechcommands_v2", "speechcommands_v2", 2.5e-4, 128, 30, "bce", (48, 48), 0.6),
    ("audioset_20k", "audioset", 1e-4, 24, 50, "bce", (48, 192), 0.5),
    ("voxceleb1", "voxceleb1", 1e-4, 32, 20, "ce", (0, 0), 0.0),
    ("iemocap", "iemocap", 1e-4, 32, 30, "ce", (0, 0), 0.0),
    ("voxceleb1_frozen", "voxceleb1", 1e-4, 32, 20, "ce", (0, 0), 0.0),
    ("iemocap_frozen", "iemocap", 1e-4, 32, 30, "ce", (0, 0), 0.0),
])
def test_recipe_configs_carry_the_paper_settings(name, dataset, lr, batch, epochs, loss, masks, mixup):
    ft, train = load_finetune_config(CONFIGS / f"{name}.yaml")
    aug = ft.augment_config()
    assert (ft.dataset, train.lr, train.batch_size, train.epochs, ft.loss) == (dataset, lr, batch, epochs, loss)
    assert (aug.freq_mask, aug.time_mask, aug.mixup_p) == (*masks, mixup)
    assert ft.head_lr_mult == (3.0 if name == "audioset_20k" else 1.0)
    assert ft.freeze_encoder == name.endswith("_frozen")  # the paper fine-tunes every encoder


def test_cli_finetune_evaluate_probe(tmp_path, capsys):
    torch.manual_seed(0)
    csv_path = write_csv_dataset(tmp_path / "data", ["a", "b", "c"], per_class=6, folds=2, seconds=1.0, spread=15)
    config = {
        "finetune": {"dataset": "csv", "model": "ssamba_tiny", "fstride": 16, "tstride": 16, "augment": "none",
                     "features": "speechcommands", "folds": [1],
                     "model_overrides": {"depth": 2, "embed_dim": 32, "scan_backend": "chunked"}},
        "train": {"epochs": 5, "batch_size": 9, "lr": 1e-3, "warmup_steps": 0, "schedule": "constant",
                  "num_workers": 0, "num_threads": 1, "progress": False, "tensorboard": False, "device": "cpu"},
    }
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["finetune", "--config", str(cfg), "--data", str(csv_path), "--out", str(run), "train.max_steps=2"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert list(results["runs"]) == ["fold1"] and results["finetune"]["folds"] == [1]
    assert "| fold1 |" in capsys.readouterr().out
    assert (run / "fold1" / "model" / "task.json").is_file() and (run / "confusion.png").is_file()

    assert main(["evaluate", "--model", str(run), "--data", str(csv_path)]) == 0
    evaluated = json.loads((run / "evaluation" / "results.json").read_text())
    assert evaluated["runs"]["fold1"]["accuracy"] == pytest.approx(results["runs"]["fold1"]["accuracy"])

    assert main(["probe", "--model", str(run / "fold1" / "model"), "--data", str(csv_path), "--out", str(tmp_path / "probe"),
                 "--features", "speechcommands"]) == 0
    probed = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert set(probed["runs"]) == {"fold1", "fold2"} and "aggregate" in probed


def test_cli_errors_are_one_line(tmp_path, capsys):
    missing = str(tmp_path / "missing.yaml")
    assert main(["finetune", "--config", missing, "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing.yaml" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  dataset: esc50\n  colour: red\n")
    assert main(["finetune", "--config", str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "finetune.colour" in capsys.readouterr().err
    assert main(["probe", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path / "nodata"),
                 "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nodata" in err


def test_probe_on_audioset_layout_reports_skips_and_map(tmp_path):
    """Multi-label path: AudioSet layout with a missing clip -> mAP / d' results and the skip count."""
    from dataset_layouts import write_audioset

    import ssamba
    from ssamba.downstream.probe import probe

    torch.manual_seed(0)
    ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, scan_backend="chunked").save_pretrained(tmp_path / "m")
    write_audioset(tmp_path / "as", n_train=8, n_eval=6, missing=1, seconds=0.3)
    results = probe(tmp_path / "m", tmp_path / "as", tmp_path / "run", features="speechcommands")
    assert results["skipped_entries"] == 2
    assert set(results["runs"]["all"]) == {"mAP", "mAUC", "d_prime"}
    assert 0.0 < results["runs"]["all"]["mAP"] <= 1.0
    assert not (tmp_path / "run" / "confusion.png").exists()
