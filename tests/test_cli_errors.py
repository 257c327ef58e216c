"""Bad input across the commands: each gets one line naming the file and the problem on stderr,
exit status 2, no traceback, and nothing previously written is lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import bad_audio_dir
from cli_helpers import run_expecting_error as _run

from ssamba.models import create_model


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder"
    torch.manual_seed(0)
    create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=64).save_pretrained(path)
    return path


def test_pretrain_missing_data(capsys, tmp_path):
    line = _run(capsys, ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(tmp_path / "nope"),
                         "--out", str(tmp_path / "run")])
    assert "nope" in line


def test_pretrain_directory_of_only_bad_files(capsys, tmp_path):
    bad = bad_audio_dir(tmp_path / "bad")
    line = _run(capsys, ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(bad), "--out", str(tmp_path / "run"),
                         "train.max_steps=1", "train.num_workers=0", "train.batch_size=2"])
    assert "bad" in line


def test_pretrain_unknown_config_key(capsys, tmp_path):
    line = _run(capsys, ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(tmp_path), "--out",
                         str(tmp_path / "run"), "train.learning_rate=1e-3"])
    assert "learning_rate" in line


def test_finetune_and_probe_and_evaluate_missing_paths(capsys, tmp_path, encoder_dir):
    assert "nowhere" in _run(capsys, ["probe", "--model", str(encoder_dir), "--data", str(tmp_path / "nowhere"),
                                      "--out", str(tmp_path / "p")])
    assert "norun" in _run(capsys, ["evaluate", "--model", str(tmp_path / "norun"), "--data", str(tmp_path),
                                    "--out", str(tmp_path / "e")])


def test_label_csv_with_missing_columns(capsys, tmp_path, encoder_dir):
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    (data / "labels.csv").write_text("file,colour\na.wav,red\n")
    line = _run(capsys, ["probe", "--model", str(encoder_dir), "--data", str(data / "labels.csv"),
                         "--dataset", "csv", "--out", str(tmp_path / "p")])
    assert "labels.csv" in line


def test_truncated_safetensors_and_other_architecture(capsys, tmp_path, encoder_dir):
    clip = tmp_path / "a.wav"
    sf.write(clip, 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_bytes((encoder_dir / "config.json").read_bytes())
    weights = (encoder_dir / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    assert "truncated" in _run(capsys, ["embed", str(clip), "--model", str(truncated), "--out", str(tmp_path / "e.npy")])
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((encoder_dir / "config.json").read_text())
    meta["encoder"]["arch"] = "ssast"
    (other / "config.json").write_text(json.dumps(meta))
    (other / "model.safetensors").write_bytes(weights)
    assert "other" in _run(capsys, ["embed", str(clip), "--model", str(other), "--out", str(tmp_path / "e.npy")])
    assert not (tmp_path / "e.npy").exists()   # no half-written output


def test_embed_keeps_a_previous_output_when_the_input_is_bad(capsys, tmp_path, encoder_dir):
    out = tmp_path / "e.npy"
    np.save(out, np.arange(3))
    _run(capsys, ["embed", str(bad_audio_dir(tmp_path / "bad") / "corrupt.wav"), "--model", str(encoder_dir),
                  "--out", str(out)])
    assert np.array_equal(np.load(out), np.arange(3))


def test_shards_and_demo_corpus_missing(capsys, tmp_path):
    assert "nope" in _run(capsys, ["shards", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert "nope" in _run(capsys, ["demo", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "d"),
                                   "--cache", str(tmp_path / "c")])


def test_convert_of_a_non_checkpoint(capsys, tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x00" * 100)
    assert "model.pth" in _run(capsys, ["convert", str(bad), str(tmp_path / "out")])


def test_bench_rejects_a_bad_token_count(capsys, tmp_path):
    assert "tokens" in _run(capsys, ["bench", "--tokens", "0", "--out", str(tmp_path / "b")])
