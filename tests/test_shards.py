"""WebDataset shards (writer, streaming reader), the audio-folder dataset, configs and the pretrain CLI."""

import tarfile

import pytest
import torch
from test_resume import REPO, make_audio_folder

from ssamba.cli import main
from ssamba.data.audio_folder import AudioCropDataset, list_audio
from ssamba.data.shards import ShardStream, write_shards
from ssamba.errors import ConfigError, DataError
from ssamba.pretrain import load_run_config, run_pretraining
from ssamba.train.metrics_log import read_metrics


def test_write_shards_cli_and_stream(tmp_path):
    audio = make_audio_folder(tmp_path / "audio", n=7)
    assert main(["shards", str(audio), str(tmp_path / "shards"), "--max-per-shard", "3"]) == 0
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    names = [m.name for s in shards for m in tarfile.open(s).getmembers()]
    assert sorted(names) == sorted(f"clip{i:03d}.flac" for i in range(7))
    # the stream yields every clip once per epoch, as fixed-size normalised fbank crops
    stream = ShardStream(tmp_path / "shards", crop_frames=64, seed=1)
    items = list(stream)
    assert len(items) == 7 and all(x["fbank"].shape == (64, 128) for x in items)
    again = list(stream)
    assert all(torch.equal(a["fbank"], b["fbank"]) for a, b in zip(items, again))  # same epoch: same data
    stream.set_epoch(1)
    other = list(stream)
    assert not all(torch.equal(a["fbank"], b["fbank"]) for a, b in zip(items, other))


def test_folder_dataset_crops_are_seeded(tmp_path):
    audio = make_audio_folder(tmp_path / "audio", n=3, seconds=3.0)
    ds = AudioCropDataset(audio, crop_frames=100)
    a, b, c = ds[(0, 5)]["fbank"], ds[(0, 5)]["fbank"], ds[(0, 6)]["fbank"]
    assert a.shape == (100, 128) and torch.equal(a, b) and not torch.equal(a, c)
    short = AudioCropDataset(audio, crop_frames=1000)[(0, 1)]["fbank"]  # shorter than the crop: zero-padded
    assert short.shape == (1000, 128)
    manifest = tmp_path / "list.txt"
    manifest.write_text("audio/clip001.flac\naudio/clip000.flac\n")
    assert [p.name for p in list_audio(manifest)] == ["clip001.flac", "clip000.flac"]
    manifest.write_text("audio/missing.flac\n")
    with pytest.raises(DataError, match="do not exist"):
        list_audio(manifest)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        list_audio(tmp_path / "empty")


def test_config_overrides_and_errors(tmp_path):
    cfg = load_run_config(REPO / "configs/pretrain/ssast_tiny_cpu.yaml", ["train.lr=1e-3", "pretrain.two_pass=false"])
    assert cfg["train"]["lr"] == 1e-3 and cfg["pretrain"]["two_pass"] is False
    assert cfg["model"]["name"] == "ssast_tiny"
    with pytest.raises(ConfigError, match="train.lrr"):
        load_run_config(REPO / "configs/pretrain/ssast_tiny_cpu.yaml", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="pretrain.masking"):
        load_run_config(REPO / "configs/pretrain/ssast_tiny_cpu.yaml", ["pretrain.masking=stripes"])
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    code = main(["pretrain", "--config", str(tmp_path / "nope.yaml"), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_pretraining_from_shards_both_encoders(tmp_path, arch):
    audio = make_audio_folder(tmp_path / "audio", n=8)
    write_shards(audio, tmp_path / "shards", max_per_shard=4)
    summary = run_pretraining(REPO / f"configs/pretrain/{arch}_tiny_cpu.yaml", tmp_path / "shards", tmp_path / "run",
                              overrides=["model.overrides.depth=2", "model.overrides.embed_dim=32",
                                         "model.overrides.num_heads=2", "data.crop_frames=96",
                                         "train.batch_size=2", "train.max_steps=3", "train.num_workers=0",
                                         "train.progress=false", "train.num_threads=1"])
    assert summary["steps"] == 3
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 3 and all(0 <= r["acc"] <= 1 for r in rows)
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()


def test_bundled_recipes_resolve_by_name_and_unknown_names_list_them():
    from ssamba.errors import ConfigError
    from ssamba.train.config import load_yaml, resolve_config

    by_name = resolve_config("ssamba_tiny_cpu")
    assert by_name.parts[-2:] == ("pretrain", "ssamba_tiny_cpu.yaml")
    assert resolve_config("finetune/esc50").name == "esc50.yaml"
    assert load_yaml("ssamba_tiny_cpu")["model"]["name"] == "ssamba_tiny"
    with pytest.raises(ConfigError, match="no_such_recipe.*bundled recipes: .*ssamba_tiny_cpu"):
        resolve_config("no_such_recipe")


def test_pretraining_pads_clicks_and_names_a_corrupt_file_in_one_line(tmp_path):
    """A 20 ms click is data (padded to one frame); a corrupt file stops the CLI with one line, even
    when it is decoded in a DataLoader worker (whose error text carries the worker's traceback)."""
    import subprocess

    import numpy as np
    import soundfile as sf
    from test_resume import make_audio_folder, pretrain_cmd

    data = make_audio_folder(tmp_path / "audio", n=4)
    sf.write(data / "click.wav", np.ones(320, np.float32) * 0.1, 16000)
    ok = subprocess.run(pretrain_cmd(data, tmp_path / "ok", 2, 100, "train.num_workers=1"),
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    (data / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    bad = subprocess.run(pretrain_cmd(data, tmp_path / "bad", 4, 100, "train.num_workers=1"),
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    errors = [line for line in bad.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.wav" in errors[0], bad.stderr
    assert "Traceback" not in bad.stderr
