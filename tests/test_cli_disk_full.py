"""A disk that fills mid-write, simulated in-process: the write puts some bytes down, then raises
OSError(ENOSPC) without a file name, as write() does. Each command answers with one line naming
the output, exit status 2; the previous good file survives and no half-written file is left
where a later run would read it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset
from cli_helpers import TINY_PRETRAIN, run_expecting_error, write_tone

from ssamba.cli import main
from ssamba.models import create_model


def _full_disk(real):
    """``real``'s stand-in: writes half of what ``real`` would, then fails as a full disk does."""
    def write(*args, **kwargs):
        real(*args, **kwargs)
        target = next(a for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike)) or hasattr(a, "write"))
        if hasattr(target, "truncate"):
            target.truncate(max(target.tell() // 2, 1))
        else:
            os.truncate(target, os.path.getsize(target) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


def _hidden(folder):
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder"
    torch.manual_seed(0)
    create_model("ssast_tiny", depth=1, embed_dim=48, input_tdim=64).save_pretrained(path)  # no numba warm-up
    return path


def test_embed_keeps_the_previous_output(capsys, monkeypatch, tmp_path, encoder_dir):
    clip = write_tone(tmp_path / "a.wav")
    out = tmp_path / "e.npy"
    np.save(out, np.arange(3))
    monkeypatch.setattr(np, "save", _full_disk(np.save))
    line = run_expecting_error(capsys, ["embed", str(clip), "--model", str(encoder_dir), "--out", str(out)])
    assert str(out) in line and "No space left" in line
    monkeypatch.undo()
    assert np.array_equal(np.load(out), np.arange(3)) and _hidden(tmp_path) == []


def test_embed_replaces_its_outputs_together(capsys, monkeypatch, tmp_path, encoder_dir):
    """The embeddings are complete but the file list fails: the old pair stays, not a new .npy
    beside an old list of names."""
    clip = write_tone(tmp_path / "a.wav")
    out = tmp_path / "e.npy"
    np.save(out, np.arange(3))
    out.with_suffix(".files.txt").write_text("old.wav\n")
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if ".files.txt." in self.name:   # the list's temp file
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    line = run_expecting_error(capsys, ["embed", str(clip), "--model", str(encoder_dir), "--out", str(out)])
    monkeypatch.undo()
    assert "e.files.txt" in line and "No space left" in line
    assert np.array_equal(np.load(out), np.arange(3)) and out.with_suffix(".files.txt").read_text() == "old.wav\n"
    assert _hidden(tmp_path) == []


def test_shards_leave_no_shard_behind(capsys, monkeypatch, tmp_path):
    for i in range(3):
        write_tone(tmp_path / "src" / f"{i}.wav")
    out = tmp_path / "shards"
    real = webdataset.ShardWriter.write
    calls = []

    def write(self, sample):
        calls.append(sample["__key__"])
        real(self, sample)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(webdataset.ShardWriter, "write", write)
    line = run_expecting_error(capsys, ["shards", str(tmp_path / "src"), str(out), "--max-per-shard", "1"])
    assert str(out) in line and "No space left" in line
    assert list(out.iterdir()) == []   # the first, complete shard was not moved in either: all or nothing


def test_a_failed_checkpoint_write_keeps_the_last_good_one(monkeypatch, tmp_path):
    from ssamba.train import checkpointing

    state = {"w": torch.arange(4.0)}
    checkpointing.save_checkpoint(tmp_path, 1, state, {"step": 1}, {"step": 1})
    monkeypatch.setattr(checkpointing, "save_file", _full_disk(checkpointing.save_file))
    with pytest.raises(OSError) as info:
        checkpointing.save_checkpoint(tmp_path, 2, {"w": torch.ones(4)}, {"step": 2}, {"step": 2})
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("step-2")
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["last", "step-1"]   # no temp folder, no step-2
    weights, config, _ = checkpointing.load_checkpoint(tmp_path)
    assert config == {"step": 1} and torch.equal(weights["w"], state["w"])


def test_atomic_write_names_the_target_and_keeps_the_old_file(tmp_path):
    from ssamba.checkpoints.format import atomic_write

    target = tmp_path / "results.json"
    target.write_text("old")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        atomic_write(target, write)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.slow
def test_pretrain_resume_on_a_full_disk_keeps_the_previous_checkpoint(capsys, monkeypatch, tmp_path):
    from ssamba.train import checkpointing

    data = tmp_path / "data"
    for i in range(2):
        write_tone(data / f"t{i}.wav", freq=300.0 + 200 * i)
    out = tmp_path / "run"
    argv = ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(data), "--out", str(out)]
    assert main([*argv, *TINY_PRETRAIN, "train.max_steps=1"]) == 0
    before = checkpointing.load_checkpoint(out)[0]
    monkeypatch.setattr(checkpointing, "save_file", _full_disk(checkpointing.save_file))
    line = run_expecting_error(capsys, [*argv, "--resume", *TINY_PRETRAIN, "train.max_steps=2"])
    assert "step-2" in line and "No space left" in line
    monkeypatch.undo()
    assert os.readlink(out / "checkpoints" / "last") == "step-1" and _hidden(out / "checkpoints") == []
    after = checkpointing.load_checkpoint(out)[0]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_metrics_row_cut_short_is_dropped_on_resume(tmp_path):
    from ssamba.train.metrics_log import MetricsLog, read_metrics

    path = tmp_path / "metrics.csv"
    path.write_text("step,epoch,loss\n1,0,3.5\n2,0,3.25\n3,0,3.0\n4,0")   # the disk filled inside row 4
    MetricsLog(tmp_path, tensorboard=False, resume_step=9).close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    MetricsLog(tmp_path, tensorboard=False, resume_step=2).close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 3.5), (2, 3.25)]
