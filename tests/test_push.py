"""Publishing: `push_to_hub` / `ssamba push` checked at the HfApi boundary. The fake API writes
what it is asked to upload into a Hub-layout cache (refs/main, snapshots/<commit>, blobs), so
each pushed repo is then loaded by address, offline, and compared with what was pushed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx2
import pytest
import torch
from cli_helpers import run_expecting_error
from hub_helpers import cache_files, folder_files, write_hub_cache
from safetensors.torch import save_file

import ssamba
from ssamba.cli import main as cli_main
from ssamba.data.manifests import DatasetSpec
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, load_finetuned, save_finetuned
from ssamba.errors import CheckpointError

METRICS = "step,epoch,loss,acc,mse,nce,lr,clips_per_s,elapsed_s\n1,0,16.5,0.09,1.37,2.91,0.0005,9.1,1.2\n" \
          "40,2,7.25,0.4375,0.41,3.125,0.00025,210.5,30.5\n"
EVAL = "step,epoch,loss,acc\n40,2,7.5,0.40625\n"


class FakeHubApi:
    """Stands in for huggingface_hub.HfApi: records the calls and lands each upload as a commit in
    the Hub cache ``FakeHubApi.cache``, as a later download would."""

    cache: Path
    calls: list = []
    fail: BaseException | None = None

    def __init__(self, token=None) -> None:
        self.token = token

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        FakeHubApi.calls.append(("create_repo", repo_id, private, exist_ok))
        if FakeHubApi.fail is not None:
            raise FakeHubApi.fail
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, commit_message=None, **kwargs):
        files = {str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
        FakeHubApi.calls.append(("upload_folder", repo_id, sorted(files), commit_message))
        commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        write_hub_cache(FakeHubApi.cache, repo_id, files, commit=commit)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/{commit}"})()


@pytest.fixture
def fake_hub(hub_cache, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    FakeHubApi.cache, FakeHubApi.calls, FakeHubApi.fail = hub_cache, [], None
    return FakeHubApi


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=64).eval()


def outputs(model, seed: int = 3) -> torch.Tensor:
    x = torch.randn(2, 64, 128, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.forward_features(x)


def pretraining_run(root: Path, encoder) -> Path:
    """A run folder as the Trainer leaves it: metrics.csv, eval.csv, checkpoints/step-40 with the
    task's state (encoder.* + heads) and the run config, `last`/`best` links."""
    ckpt = root / "checkpoints" / "step-40"
    ckpt.mkdir(parents=True)
    state = {f"encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    state["mask_embed"] = torch.full((1, 1, 32), 0.5)
    save_file(state, ckpt / "model.safetensors")
    config = {"data": {"source": "/data/debian-sounds", "crop_frames": 64}, "pretrain": {"objective": "joint"},
              "model": {"name": "ssamba_tiny"}, "train": {"max_steps": 40}, "encoder": encoder.config.to_dict()}
    (ckpt / "config.json").write_text(json.dumps(config))
    for name in ("last", "best"):
        (root / "checkpoints" / name).symlink_to("step-40")
    (root / "metrics.csv").write_text(METRICS)
    (root / "eval.csv").write_text(EVAL)
    return root


def test_push_encoder_then_load_by_address_is_bit_identical(fake_hub):
    model = tiny(0)
    url = ssamba.push_to_hub(model, "me/tiny-encoder")
    assert url.startswith("https://huggingface.co/me/tiny-encoder/commit/")
    assert fake_hub.calls[0] == ("create_repo", "me/tiny-encoder", None, True)
    assert fake_hub.calls[1][2] == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(outputs(ssamba.load("hf://me/tiny-encoder")), outputs(model))
    model.push_to_hub("me/tiny-method", private=True)
    assert fake_hub.calls[2] == ("create_repo", "me/tiny-method", True, True)
    assert torch.equal(outputs(ssamba.load("hf://me/tiny-method")), outputs(model))


def test_push_a_pretraining_run_carries_its_heads_and_record(fake_hub, tmp_path, capsys):
    model = tiny(1)
    run = pretraining_run(tmp_path / "run", model)
    assert cli_main(["push", str(run), "me/pretrained"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert fake_hub.calls[1][2] == ["README.md", "config.json", "extra_state.safetensors", "model.safetensors"]
    assert torch.equal(outputs(ssamba.load("hf://me/pretrained")), outputs(model))
    _, _, extra = ssamba.models.load_state("hf://me/pretrained")
    assert torch.equal(extra["mask_embed"], torch.full((1, 1, 32), 0.5))
    card = (fake_hub.cache / "models--me--pretrained" / "snapshots").glob("*/README.md").__next__().read_text()
    for shown in ("/data/debian-sounds", "optimizer steps: 40", "loss 7.25", "nce 3.125", "acc 0.4375",
                  "last validation: step 40, loss 7.5, acc 0.4062", 'ssamba.load("hf://me/pretrained")'):
        assert shown in card, shown


def test_push_a_finetuning_run_keeps_the_head_and_renders_results(fake_hub, tmp_path):
    spec = DatasetSpec("toy", ["a", "b", "c"])
    task = FinetuneTask(tiny(2), 3).eval()
    torch.nn.init.normal_(task.head.linear.weight)
    save_finetuned(task, tmp_path / "ft" / "model", spec, FinetuneConfig())
    results = {"dataset": "toy", "num_classes": 3, "runs": {"all": {"accuracy": 0.8125, "loss": 0.5}},
               "init": "official:ssamba_tiny_400"}
    (tmp_path / "ft" / "results.json").write_text(json.dumps(results))
    ssamba.push_to_hub(tmp_path / "ft", "me/finetuned")
    snapshot = next((fake_hub.cache / "models--me--finetuned" / "snapshots").iterdir())
    assert sorted(folder_files(snapshot)) == ["README.md", "config.json", "head.safetensors", "model.safetensors",
                                              "task.json"]
    loaded, meta = load_finetuned(snapshot)
    assert meta["class_names"] == ["a", "b", "c"]
    x = torch.randn(2, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.logits(x), task.logits(x))
    card = (snapshot / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "base_model: attentionisallyouneed369/ssamba" in card
    assert "| all | accuracy | 0.8125 |" in card and "fine-tuned on toy" in card


def test_push_errors_are_one_line(fake_hub, tmp_path, capsys):
    from huggingface_hub import errors

    run = pretraining_run(tmp_path / "run", tiny(0))
    line = run_expecting_error(capsys, ["push", str(run), "not-a-repo-id"])
    assert "not-a-repo-id: not a Hub repository id (expected OWNER/REPO)" in line
    line = run_expecting_error(capsys, ["push", str(tmp_path / "missing"), "me/x"])
    assert "missing: no such checkpoint file or directory" in line
    for fold in ("fold1", "fold2"):
        save_finetuned(FinetuneTask(tiny(0), 2), tmp_path / "folds" / fold / "model", DatasetSpec("t", ["a", "b"]),
                       FinetuneConfig())
    line = run_expecting_error(capsys, ["push", str(tmp_path / "folds"), "me/x"])
    assert "one model per fold (fold1, fold2); push one of them" in line
    response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    fake_hub.fail = errors.HfHubHTTPError("403 Forbidden: you cannot write to me/x", response=response)
    line = run_expecting_error(capsys, ["push", str(run), "me/x"])
    assert "hf://me/x: upload failed: the Hub answered HTTP 403" in line
    assert not [f for f in cache_files(fake_hub.cache) if "snapshots" in f]


def test_push_refuses_what_does_not_load(fake_hub, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"encoder": {"arch": "ssamba", "embed_dim": 48}}')
    save_file({"pos_embed": torch.zeros(1)}, tmp_path / "bad" / "model.safetensors")
    with pytest.raises(CheckpointError, match="bad: does not fit a ssamba encoder"):
        ssamba.push_to_hub(tmp_path / "bad", "me/bad")
    assert fake_hub.calls == []
