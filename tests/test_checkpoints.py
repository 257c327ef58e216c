"""Checkpoints: save_pretrained/load round trips, official .pth conversion (API and CLI), clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ssamba
from ssamba.cli import main as cli_main
from ssamba.errors import CheckpointError
from ssamba.models import convert_official, load_official_state, load_state

torch.set_num_threads(1)
FIX = Path(__file__).parent / "fixtures" / "official"


def tiny(arch="ssamba"):
    torch.manual_seed(0)
    if arch == "ssamba":
        return ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=64).eval()
    return ssamba.create_model("ssast_tiny", depth=2, embed_dim=32, num_heads=2, input_tdim=64).eval()


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_save_pretrained_round_trip(arch, tmp_path):
    model = tiny(arch)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["encoder"]["arch"] == arch and meta["encoder"]["embed_dim"] == 32
    loaded = ssamba.load(tmp_path / "ckpt")
    assert not loaded.training and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.randn(2, 64, 128)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_over_existing_checkpoint_replaces_files(tmp_path):
    first, second = tiny(), tiny()
    with torch.no_grad():
        second.cls_token.add_(1.0)
    first.save_pretrained(tmp_path)
    second.save_pretrained(tmp_path)
    assert torch.equal(ssamba.load(tmp_path).cls_token, second.cls_token)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_with_new_geometry_resizes_positions(tmp_path):
    tiny().save_pretrained(tmp_path)
    model = ssamba.load(tmp_path, fstride=10, tstride=10, input_tdim=100)
    assert model.config.grid == (12, 9) and model.pos_embed.shape == (1, 1 + 108, 32)
    with pytest.raises(CheckpointError, match="patch shape"):
        ssamba.load(tmp_path, fshape=8)
    with pytest.raises(CheckpointError, match="overrides"):
        ssamba.load(tmp_path, no_such_field=1)


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_convert_round_trip_api(arch, tmp_path):
    extra_kw = {"num_heads": 4} if arch == "ssast" else {}
    src = FIX / f"{arch}_official.pth"
    out = convert_official(src, tmp_path / "converted", **extra_kw)
    direct = ssamba.load(src, **extra_kw)
    converted = ssamba.load(out)
    assert converted.config == direct.config
    for key, value in direct.state_dict().items():
        assert torch.equal(value, converted.state_dict()[key]), key
    _, _, extra_pth = load_official_state(src)
    _, _, extra_dir = load_state(out)
    assert extra_pth.keys() == extra_dir.keys() and all(torch.equal(extra_pth[k], extra_dir[k]) for k in extra_pth)
    x = torch.load(FIX / "inputs.pt", weights_only=True)["fbank"][:, :64]
    with torch.no_grad():
        assert torch.equal(direct.forward_features(x), converted.forward_features(x))


def test_convert_cli(tmp_path, capsys):
    code = cli_main(["convert", str(FIX / "ssamba_official.pth"), str(tmp_path / "out")])
    assert code == 0
    assert "ssamba D=64 depth=4" in capsys.readouterr().out
    direct, converted = ssamba.load(FIX / "ssamba_official.pth"), ssamba.load(tmp_path / "out")
    assert all(torch.equal(v, converted.state_dict()[k]) for k, v in direct.state_dict().items())


def test_convert_cli_bad_input_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert cli_main(["convert", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pth" in err and "Traceback" not in err


def _official_state() -> dict:
    return torch.load(FIX / "ssamba_official.pth", weights_only=True)


def test_wrong_shape_checkpoint_lists_mismatched_keys(tmp_path):
    state = _official_state()
    state["module.v.layers.1.mixer.x_proj_b.weight"] = torch.zeros(3, 3)
    state["module.v.layers.2.mixer.D"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        ssamba.load(tmp_path / "bad.pth")
    msg = str(info.value)
    assert "bad.pth" in msg and "mismatched shapes" in msg and "2 (" in msg
    assert "layers.1.mixer.x_proj_b.weight (3, 3) vs (36, 128)" in msg and "layers.2.mixer.D" in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = _official_state()
    del state["module.v.layers.3.mixer.D_b"]
    state["module.v.extra_thing"] = torch.zeros(2)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys 1 \(layers.3.mixer.D_b\).*unexpected keys 1 \(extra_thing\)"):
        ssamba.load(tmp_path / "bad.pth")


def test_dir_whose_config_does_not_fit_its_weights(tmp_path):
    tiny().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["encoder"]["d_state"] = 8
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"mismatched shapes.*A_log"):
        ssamba.load(tmp_path)


def test_foreign_and_unreadable_checkpoints(tmp_path):
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not an official SSAMBA/SSAST checkpoint"):
        ssamba.load(tmp_path / "resnet.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pth: not a loadable PyTorch checkpoint"):
        ssamba.load(tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ssamba.load(tmp_path / "missing.pth")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        ssamba.load(tmp_path / "empty_dir")


class _Payload:
    """Any pickled object that is not plain tensors/containers."""


def test_checkpoint_with_arbitrary_pickles_is_refused(tmp_path):
    torch.save({"module.v.pos_embed": torch.zeros(1), "x": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth: not a loadable PyTorch checkpoint"):
        ssamba.load(tmp_path / "evil.pth")


def test_official_fine_tuned_checkpoint_geometry_is_inferred(tmp_path):
    """Fine-tuned official files record no input size: stride 10 is found from the pos_embed length."""
    ft = ssamba.load(FIX / "ssamba_official.pth", fstride=10, tstride=10, input_tdim=80)
    state = {f"module.v.{k}": v for k, v in ft.state_dict().items()}
    state["module.mlp_head.1.weight"] = torch.zeros(2, 64)
    torch.save(state, tmp_path / "ft.pth")
    config, _, extra = load_official_state(tmp_path / "ft.pth")
    assert (config.fstride, config.tstride, config.grid) == (10, 10, (12, 7))
    assert "mlp_head.1.weight" in extra
    reloaded = ssamba.load(tmp_path / "ft.pth")
    x = torch.randn(1, 80, 128)
    with torch.no_grad():
        assert torch.equal(reloaded(x), ft(x))
