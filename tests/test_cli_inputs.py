"""Bad input for finetune, probe, evaluate, convert, shards, demo --corpus and bench (pretrain and
embed: tests/test_cli_errors.py): a missing path, a folder of only bad files (zero-byte, corrupt,
NaN), a label CSV with unknown labels, an unknown config key, a truncated .safetensors, a
checkpoint of the other architecture. Each: one line naming the file and the problem, exit
status 2, no traceback, no result written."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import bad_audio_dir, run_expecting_error, write_tone

from ssamba.models import create_model

TINY_FINETUNE = ["train.num_workers=0", "train.max_steps=1", "train.batch_size=2", "train.progress=false",
                 "train.tensorboard=false", "finetune.features=speechcommands"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny SSAST encoder (no numba warm-up), the same with its weights cut in half, and its
    weights under a config that says SSAMBA (the other architecture)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    good = root / "good"
    create_model("ssast_tiny", depth=2, embed_dim=48, input_tdim=128).save_pretrained(good)
    weights = (good / "model.safetensors").read_bytes()
    truncated, other = root / "truncated", root / "other"
    for folder in (truncated, other):
        folder.mkdir()
    (truncated / "config.json").write_bytes((good / "config.json").read_bytes())
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    meta = json.loads((good / "config.json").read_text())
    meta["encoder"]["arch"] = "ssamba"
    (other / "config.json").write_text(json.dumps(meta))
    (other / "model.safetensors").write_bytes(weights)
    return {"good": good, "truncated": truncated, "other": other}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """labels.csv over four tones (classes a, b; folds 1, 2), and one over only bad files."""
    root = tmp_path_factory.mktemp("data")
    good = root / "good"
    for i in range(4):
        write_tone(good / f"{i}.wav", freq=200.0 + 150 * i)
    (good / "labels.csv").write_text("path,label,fold\n0.wav,a,1\n1.wav,a,2\n2.wav,b,1\n3.wav,b,2\n")
    bad = bad_audio_dir(root / "bad")
    (bad / "labels.csv").write_text("path,label,fold\nempty.wav,a,1\ncorrupt.wav,a,2\nnan.wav,b,1\nnan.wav,b,2\n")
    return {"good": good / "labels.csv", "bad": bad / "labels.csv", "bad_dir": bad}


def _finetune(data, out, *extra, init=None):
    return ["finetune", "--config", "esc50", "--data", str(data), "--dataset", "csv", "--out", str(out),
            *(["--init", str(init)] if init else []), *TINY_FINETUNE, *extra]


def test_finetune_missing_data_and_unknown_key(capsys, tmp_path, datasets):
    assert "nope" in run_expecting_error(capsys, _finetune(tmp_path / "nope.csv", tmp_path / "o"))
    line = run_expecting_error(capsys, _finetune(datasets["good"], tmp_path / "o", "finetune.learning_rate=1"))
    assert "finetune.learning_rate" in line and "unknown setting" in line
    assert not (tmp_path / "o").exists()


def test_pretrain_and_finetune_with_a_csv_missing_its_columns(capsys, tmp_path, datasets):
    data = datasets["good"].parent
    (data / "nocols.csv").write_text("name,colour\n0.wav,red\n")
    line = run_expecting_error(capsys, ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(data / "nocols.csv"),
                                        "--out", str(tmp_path / "r")])
    assert "nocols.csv" in line and "'path'" in line
    (data / "one.csv").write_text("path\n0.wav\n")
    line = run_expecting_error(capsys, ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(data / "one.csv"),
                                        "--out", str(tmp_path / "r")])
    assert "one.csv" in line and "fewer than one batch" in line
    line = run_expecting_error(capsys, _finetune(data / "nocols.csv", tmp_path / "f"))
    assert "nocols.csv" in line and "missing column" in line
    assert not (tmp_path / "r" / "checkpoints").exists() and not (tmp_path / "f" / "results.json").exists()


def test_finetune_on_only_bad_files(capsys, tmp_path, datasets, models):
    line = run_expecting_error(capsys, _finetune(datasets["bad"], tmp_path / "o", init=models["good"]))
    assert str(datasets["bad_dir"]) in line and any(p in line for p in ("0 bytes", "not a readable", "NaN"))
    assert not (tmp_path / "o" / "results.json").exists() and not (tmp_path / "o" / "checkpoints").exists()


@pytest.mark.parametrize("kind, problem", [("truncated", "unreadable safetensors"), ("other", "other/config.json")])
def test_finetune_and_probe_with_a_broken_checkpoint(capsys, tmp_path, datasets, models, kind, problem):
    line = run_expecting_error(capsys, _finetune(datasets["good"], tmp_path / "f", init=models[kind]))
    assert str(models[kind]) in line and problem in line
    line = run_expecting_error(capsys, ["probe", "--model", str(models[kind]), "--data", str(datasets["good"]),
                                        "--dataset", "csv", "--out", str(tmp_path / "p")])
    assert str(models[kind]) in line and problem in line
    assert not (tmp_path / "f" / "results.json").exists() and not (tmp_path / "p").exists()


def test_probe_on_only_bad_files(capsys, tmp_path, datasets, models):
    line = run_expecting_error(capsys, ["probe", "--model", str(models["good"]), "--data", str(datasets["bad"]),
                                        "--dataset", "csv", "--features", "speechcommands", "--out", str(tmp_path / "p")])
    assert str(datasets["bad_dir"] / "empty.wav") in line and "0 bytes" in line
    assert not (tmp_path / "p" / "results.json").exists() and not (tmp_path / "p" / "embeddings.npz").exists()


def _finetuned_run(root, class_names, model_dir):
    """A 2-fold run folder as `finetune` leaves it, for evaluate: fold*/model/ with the encoder, task.json, a head."""
    from safetensors.torch import save_file

    from ssamba.downstream.finetune import FinetuneTask
    from ssamba.models import load

    task = FinetuneTask(load(model_dir), len(class_names))
    for fold in ("fold1", "fold2"):
        model = root / fold / "model"
        task.encoder.save_pretrained(model)
        save_file({k: v.contiguous() for k, v in task.head.state_dict().items()}, str(model / "head.safetensors"))
        (model / "task.json").write_text(json.dumps({"dataset": "labels", "class_names": class_names,
                                                     "multi_label": False, "feature_preset": "speechcommands",
                                                     "loss": "ce"}))
    return root


def test_evaluate_with_an_unknown_label(capsys, tmp_path, datasets, models):
    data = datasets["good"].parent
    (data / "other.csv").write_text("path,label,fold\n0.wav,a,1\n1.wav,a,2\n2.wav,zebra,1\n3.wav,b,2\n")
    run = _finetuned_run(tmp_path / "run", ["a", "b"], models["good"])
    line = run_expecting_error(capsys, ["evaluate", "--model", str(run), "--data", str(data / "other.csv"),
                                        "--out", str(tmp_path / "e")])
    assert "other.csv" in line and "'zebra'" in line and "unknown" in line
    assert not (tmp_path / "e").exists()


def test_evaluate_with_a_truncated_model(capsys, tmp_path, datasets, models):
    run = _finetuned_run(tmp_path / "run", ["a", "b"], models["good"])
    weights = run / "fold1" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = run_expecting_error(capsys, ["evaluate", "--model", str(run), "--data", str(datasets["good"]),
                                        "--out", str(tmp_path / "e")])
    assert str(run / "fold1" / "model") in line and "unreadable safetensors" in line
    assert not (tmp_path / "e").exists()


def test_convert_of_missing_empty_truncated_and_directory_sources(capsys, tmp_path, models):
    pth = tmp_path / "official.pth"
    torch.save({"module.v.cls_token": torch.zeros(1, 1, 8)}, pth)
    data = pth.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.pth").write_bytes(b"")
    for src, problem in [("none.pth", "no such checkpoint file"), ("zero.pth", "not a loadable PyTorch checkpoint"),
                         ("cut.pth", "not a loadable PyTorch checkpoint")]:
        line = run_expecting_error(capsys, ["convert", str(tmp_path / src), str(tmp_path / "out")])
        assert src in line and problem in line
    line = run_expecting_error(capsys, ["convert", str(models["good"]), str(tmp_path / "out")])
    assert str(models["good"]) in line and "is a directory" in line
    assert not (tmp_path / "out").exists()


def test_shards_and_demo_corpus_of_only_bad_files(capsys, tmp_path, datasets):
    bad = datasets["bad_dir"]
    line = run_expecting_error(capsys, ["shards", str(bad), str(tmp_path / "s")])
    assert str(bad) in line and "not a readable audio file" in line
    assert not list((tmp_path / "s").glob("*.tar")) if (tmp_path / "s").exists() else True
    line = run_expecting_error(capsys, ["demo", "--corpus", str(bad), "--out", str(tmp_path / "d"),
                                        "--cache", str(tmp_path / "c"), "--quick"])
    assert str(bad) in line and "not readable as audio" in line
    assert not (tmp_path / "d" / "report.md").exists()


def test_bench_unknown_model_and_an_output_that_is_a_file(capsys, tmp_path):
    line = run_expecting_error(capsys, ["bench", "--models", "nosuch", "--tokens", "16", "--out", str(tmp_path / "b")])
    assert "'nosuch'" in line and "unknown" in line
    taken = tmp_path / "taken"
    taken.write_text("keep")
    line = run_expecting_error(capsys, ["bench", "--models", "ssast_tiny", "--attention", "sdpa", "--tokens", "16",
                                        "--repeats", "1", "--out", str(taken)])
    assert str(taken) in line and taken.read_text() == "keep"
