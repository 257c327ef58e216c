"""An output folder that exists: a finished previous run is refused (one line naming the folder and
the file found, exit 2, the old files untouched), ``pretrain --resume`` continues a run and refuses a
different config naming the differing keys (see ``ssamba.cli.outputs``)."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import TINY_PRETRAIN, run_expecting_error, write_tone

from ssamba.cli import main
from ssamba.models import create_model


def _pretrain(data, out, *overrides, resume=False):
    return ["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(data), "--out", str(out),
            *(["--resume"] if resume else []), *TINY_PRETRAIN, *overrides]


@pytest.fixture
def saved_run(tmp_path):
    """A run folder as a finished pretraining leaves it, made directly (a real run takes ~10 s):
    checkpoints/step-1 with the run's config, ``last`` pointing at it."""
    from safetensors.torch import save_file

    from ssamba.pretrain.run import load_run_config

    data = tmp_path / "data"
    write_tone(data / "t0.wav")
    run = load_run_config("ssamba_tiny_cpu", TINY_PRETRAIN + ["train.max_steps=1"])
    run["data"]["source"] = str(data.resolve())
    step = tmp_path / "run" / "checkpoints" / "step-1"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps(run))
    save_file({"w": torch.zeros(1)}, str(step / "model.safetensors"))
    (step.parent / "last").symlink_to("step-1")
    return data, tmp_path / "run"


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_refusals(capsys, data, out):
    before = _snapshot(out)
    line = run_expecting_error(capsys, _pretrain(data, out, "train.max_steps=1"))
    assert str(out) in line and "checkpoints" in line and "--resume" in line
    line = run_expecting_error(capsys, _pretrain(data, out, "train.max_steps=2", "train.lr=1e-3",
                                                 "pretrain.mask_ratio=0.25", resume=True))
    differing = line.split("different config (")[1].split(")")[0]
    assert differing == "pretrain.mask_ratio, train.lr"   # max_steps may change on a resume
    assert _snapshot(out) == before


def test_pretrain_refuses_a_previous_run_and_a_resume_with_a_different_config(capsys, saved_run):
    _check_refusals(capsys, *saved_run)


def test_resume_from_a_truncated_checkpoint_or_another_architecture(capsys, saved_run):
    data, out = saved_run
    step = out / "checkpoints" / "step-1"
    line = run_expecting_error(capsys, _pretrain(data, out, "model.name=ssast_tiny", resume=True))
    assert "model.name" in line   # a checkpoint of the other architecture is not resumed
    weights = (step / "model.safetensors").read_bytes()
    (step / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    line = run_expecting_error(capsys, _pretrain(data, out, resume=True))
    assert str(step) in line and "unreadable checkpoint" in line


@pytest.mark.slow
def test_the_same_refusals_after_a_real_pretraining_run(capsys, tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        write_tone(data / f"t{i}.wav", freq=300.0 + 200 * i)
    out = tmp_path / "run"
    assert main(_pretrain(data, out, "train.max_steps=1")) == 0
    _check_refusals(capsys, data, out)


def test_config_changes_lists_only_what_a_resume_may_not_change():
    from ssamba.pretrain.run import config_changes, load_run_config

    saved = load_run_config("ssamba_tiny_cpu")
    assert config_changes(json.loads(json.dumps(saved)), saved) == []   # the JSON round trip is not a change
    longer = load_run_config("ssamba_tiny_cpu", ["train.max_steps=9", "train.num_workers=0", "data.source=/x"])
    assert config_changes(saved, longer) == []
    other = load_run_config("ssamba_tiny_cpu", ["train.betas=[0.9,0.99]", "model.overrides.depth=3", "data.crop_frames=64"])
    assert config_changes(saved, other) == ["model.overrides", "data.crop_frames", "train.betas"]
    older = json.loads(json.dumps(saved))
    del older["train"]["tensorboard"], older["pretrain"]["mse_weight"]   # a run saved before these existed
    assert config_changes(older, saved) == []


@pytest.mark.parametrize("command, marker", [
    ("finetune", "results.json"), ("finetune", "checkpoints"), ("probe", "results.json"),
    ("evaluate", "results.json"), ("convert", "model.safetensors"), ("demo", "report.md")])
def test_a_finished_run_in_the_output_folder_is_refused(capsys, tmp_path, command, marker):
    out = tmp_path / "out"
    (out / marker).parent.mkdir(parents=True)
    if marker == "checkpoints":
        (out / marker).mkdir()
    else:
        (out / marker).write_text("previous")
    model = tmp_path / "model"
    argv = {"finetune": ["finetune", "--config", "esc50", "--data", str(tmp_path), "--out", str(out)],
            "probe": ["probe", "--model", str(model), "--data", str(tmp_path), "--out", str(out)],
            "evaluate": ["evaluate", "--model", str(model), "--data", str(tmp_path), "--out", str(out)],
            "convert": ["convert", str(tmp_path / "x.pth"), str(out)],
            "demo": ["demo", "--corpus", str(tmp_path), "--out", str(out), "--cache", str(tmp_path / "c")]}[command]
    line = run_expecting_error(capsys, argv)
    assert str(out) in line and marker in line
    if marker != "checkpoints":
        assert (out / marker).read_text() == "previous"


def test_shards_refuse_a_folder_with_shards(capsys, tmp_path):
    write_tone(tmp_path / "src" / "a.wav")
    out = tmp_path / "shards"
    assert main(["shards", str(tmp_path / "src"), str(out)]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    write_tone(tmp_path / "src" / "b.wav")
    line = run_expecting_error(capsys, ["shards", str(tmp_path / "src"), str(out)])
    assert str(out) in line and "shard-000000.tar" in line
    assert _snapshot(out) == before


def test_an_unfinished_probe_is_resumed_from_its_cache(tmp_path):
    """Only cached embeddings (no results.json): the CLI goes on (it fails later on the missing data, not on the folder)."""
    out = tmp_path / "p"
    out.mkdir()
    (out / "embeddings.npz").write_bytes(b"stale")
    torch.manual_seed(0)
    create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=64).save_pretrained(tmp_path / "m")
    code = main(["probe", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "nodata"), "--out", str(out)])
    assert code == 2 and (out / "embeddings.npz").read_bytes() == b"stale"
