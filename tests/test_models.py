"""Encoders: registry sizes, input geometry, patch order, masking, mixer maths, configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_close_to_scale, sum_ulps

import ssamba
from ssamba.errors import ConfigError
from ssamba.models import EncoderConfig, list_models
from ssamba.nn.mamba import BiMamba
from ssamba.nn.patch import resize_pos_embed
from ssamba.nn.scan import selective_scan_ref

torch.set_num_threads(1)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Counted: every parameter of the encoder as the official modules hold it at the pretraining geometry
# (128 x 1024 input, 16x16 patches, stride 16 -> 512 patches): patch-embedding conv (weight + bias),
# positional embedding (CLS + 512 patches), CLS token(s) (SSAST: cls + dist), all layers, final norm.
# Not counted: the pretraining heads (mask_embed, cpredlayer, gpredlayer), the fine-tuning mlp_head and
# the unused ImageNet head v.head / v.head_dist.  These reproduce the paper's encoder sizes.
PAPER_SIZES_M = {"ssamba_tiny": 6.92, "ssamba_small": 25.35, "ssamba_base": 96.70,
                 "ssast_tiny": 5.49, "ssast_small": 21.59, "ssast_base": 85.65}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.endswith("_base") else n
                                  for n in sorted(PAPER_SIZES_M)])   # a base model takes ~3 s to initialise
def test_registry_parameter_counts_match_paper(name):
    model = ssamba.create_model(name)
    assert round(n_params(model) / 1e6, 2) == PAPER_SIZES_M[name]
    assert model.config.depth == (24 if name.startswith("ssamba") else 12)
    assert model.pos_embed.shape[1] == model.num_cls_tokens + 512


def test_registry_names_and_overrides():
    assert list_models() == sorted(PAPER_SIZES_M)
    model = ssamba.create_model("ssast_small", depth=2, attention="naive")
    assert model.config.num_heads == 6 and len(model.blocks) == 2 and model.config.attention == "naive"
    with pytest.raises(ConfigError, match="unknown"):
        ssamba.create_model("ssamba_huge")
    with pytest.raises(ConfigError, match="widht"):
        ssamba.create_model("ssamba_tiny", widht=3)
    with pytest.raises(ConfigError, match="even"):
        ssamba.create_model("ssamba_tiny", depth=3)


def test_official_parameter_names():
    names = set(ssamba.create_model("ssamba_tiny", depth=2).state_dict())
    for key in ["layers.1.mixer.A_b_log", "layers.0.mixer.conv1d_b.weight", "layers.0.mixer.x_proj_b.weight",
                "layers.0.mixer.dt_proj_b.bias", "layers.0.mixer.D_b", "layers.0.mixer.in_proj.weight",
                "layers.0.norm.weight", "norm_f.bias", "patch_embed.proj.weight", "pos_embed", "cls_token"]:
        assert key in names
    names = set(ssamba.create_model("ssast_tiny", depth=1).state_dict())
    assert {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "dist_token", "norm.weight"} <= names


def test_official_initialisation():
    mixer = ssamba.create_model("ssamba_tiny", depth=2).layers[0].mixer
    expected_A = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(384, 16)
    assert torch.equal(mixer.A_log, expected_A) and torch.equal(mixer.A_b_log, expected_A)
    assert torch.all(mixer.D == 1) and torch.all(mixer.D_b == 1)
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert mixer.dt_proj.weight.abs().max() <= 12 ** -0.5


class TinyCase:
    @staticmethod
    def model(arch="ssamba", **kw):
        torch.manual_seed(0)
        name = "ssamba_tiny" if arch == "ssamba" else "ssast_tiny"
        defaults = dict(depth=2, embed_dim=32, input_tdim=64) if arch == "ssamba" else \
            dict(depth=2, embed_dim=32, num_heads=2, input_tdim=64)
        return ssamba.create_model(name, **{**defaults, **kw}).eval()


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
@pytest.mark.parametrize("frames", [16, 33, 64, 150])
def test_any_input_length(arch, frames):
    model = TinyCase.model(arch)
    x = torch.randn(2, frames, 128)
    with torch.no_grad():
        tokens = model.forward_features(x)
    f, t = model.patch_grid(frames)
    assert (f, t) == (8, (frames - 16) // 16 + 1)
    assert tokens.shape == (2, model.num_cls_tokens + f * t, 32)
    assert_close_to_scale(model(x), tokens[:, model.num_cls_tokens:].mean(1), sum_ulps(f * t))   # a mean of f·t tokens
    with pytest.raises(ConfigError, match="fbank"):
        model.forward_features(torch.randn(2, 15, 128))


def test_positional_embedding_crop_and_interpolation():
    pos = torch.randn(1, 8 * 6, 4)
    grid = pos.transpose(1, 2).reshape(1, 4, 8, 6)
    cropped = resize_pos_embed(pos, (8, 6), (8, 3))
    assert torch.equal(cropped.transpose(1, 2).reshape(1, 4, 8, 3), grid[..., 2:5])  # centre: 6//2 - 3//2 = 2
    cropped_f = resize_pos_embed(pos, (8, 6), (4, 6))
    assert torch.equal(cropped_f.transpose(1, 2).reshape(1, 4, 4, 6), grid[:, :, 2:6])
    grown = resize_pos_embed(pos, (8, 6), (12, 9)).transpose(1, 2).reshape(1, 4, 12, 9)
    assert_close_to_scale(grown, F.interpolate(grid, size=(12, 9), mode="bilinear"), sum_ulps(4))   # 4-point blend
    assert resize_pos_embed(pos, (8, 6), (8, 6)) is pos


def test_patchify_is_in_token_order():
    """Token i*t + j is frequency band i, time column j; the patch is fbank[time j-block, freq i-block] as (f, t)."""
    model = TinyCase.model()
    x = torch.randn(1, 48, 128)
    patches = model.patchify(x)
    f, t = model.patch_grid(48)
    assert patches.shape == (1, f * t, 256)
    for i, j in [(0, 0), (0, 2), (3, 1), (7, 2)]:
        block = x[0, 16 * j:16 * (j + 1), 16 * i:16 * (i + 1)].T  # (freq, time)
        assert torch.equal(patches[0, i * t + j], block.reshape(-1))
    # and the patch embedding is the conv of exactly that patch
    w, b = model.patch_embed.proj.weight, model.patch_embed.proj.bias
    emb = model.patch_embed(x)
    assert_close_to_scale(emb[0, 3 * t + 1], w.reshape(32, -1) @ patches[0, 3 * t + 1] + b, sum_ulps(256))   # 16x16 taps


def test_mask_replaces_patch_embeddings_before_positions():
    model = TinyCase.model()
    x = torch.randn(2, 64, 128)
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[0, [1, 5]] = True
    mask[1, 7] = True
    me = torch.randn(1, 1, 32)
    tokens = model.embed_tokens(x, mask, me)
    plain = model.embed_tokens(x)
    pos = model.pos_embed
    # one addition (after a 0/1 blend): within an ulp; torch's default rtol 1e-5 (~84 eps) is relative
    assert torch.allclose(tokens[0, 1 + 5], me[0, 0] + pos[0, 1 + 5])
    assert torch.allclose(tokens[1, 1 + 7], me[0, 0] + pos[0, 1 + 7])
    keep = ~torch.cat([torch.zeros(2, 1, dtype=torch.bool), mask], 1)
    assert torch.equal(tokens[keep], plain[keep])
    assert not torch.allclose(model.forward_features(x, mask, me), model.forward_features(x))


def _mixer_by_hand(m: BiMamba, h: torch.Tensor) -> torch.Tensor:
    """The v2 mixer written out per direction with two reference-scan calls (facts sheet, step 5)."""
    R, N, L = m.dt_rank, m.d_state, h.shape[1]
    x, z = m.in_proj(h).transpose(1, 2).chunk(2, dim=1)

    def branch(xs, zs, conv, x_proj, dt_proj, A_log, D):
        u = F.silu(conv(xs)[..., :L])
        dbl = x_proj(u.transpose(1, 2))
        dt, B, C = dbl.split([R, N, N], dim=-1)
        delta = (dt @ dt_proj.weight.T).transpose(1, 2)
        return selective_scan_ref(u, delta, -torch.exp(A_log), B.transpose(1, 2), C.transpose(1, 2), D, zs,
                                  dt_proj.bias, delta_softplus=True)

    y_f = branch(x, z, m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D)
    y_b = branch(x.flip(-1), z.flip(-1), m.conv1d_b, m.x_proj_b, m.dt_proj_b, m.A_b_log, m.D_b)
    return m.out_proj(((y_f + y_b.flip(-1)) / 2).transpose(1, 2))


@pytest.mark.parametrize("length", [1, 2, 7, 33])
def test_batched_bidirectional_mixer_equals_two_direction_reference(length):
    torch.manual_seed(length)
    m = BiMamba(24, d_state=8, scan_backend="ref")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    h = torch.randn(3, length, 24, requires_grad=True)
    out, ref = m(h), _mixer_by_hand(m, h)
    assert_close_to_scale(out, ref, sum_ulps(length * 8 + 2 * 24))   # the scan's L·N, the projections' 2·d_model
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    if length > 1:  # with one step, A never multiplies a non-zero state
        assert all(g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if g.abs().sum() == 0]
    m.zero_grad()
    _mixer_by_hand(m, h).square().sum().backward()
    for n, p in m.named_parameters():
        assert_close_to_scale(grads[n], p.grad, sum_ulps(3 * length * 8 + 2 * 24), n)   # + the batch of 3


def test_mixer_default_backend_matches_ref():
    torch.manual_seed(1)
    m = BiMamba(32, scan_backend="ref")
    h = torch.randn(2, 50, 32)
    with torch.no_grad():
        ref = m(h)
        m.scan_backend = None
        assert_close_to_scale(m(h), ref, sum_ulps(50 * 16 + 2 * 32))


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_batch_independence(arch):
    model = TinyCase.model(arch)
    x = torch.randn(3, 48, 128)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
    # the same maths with another BLAS blocking; per layer the longest sums are the mixing over the
    # 25 tokens x 16 (scan states or head width) and the MLP's 4·32 inputs
    assert_close_to_scale(together, alone, sum_ulps(25 * 16 + 4 * 32, layers=2))


def test_ssast_naive_and_sdpa_attention_agree():
    a = TinyCase.model("ssast", attention="naive")
    b = TinyCase.model("ssast", attention="sdpa")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 64, 128)
    with torch.no_grad():
        # softmax-weighted sums over 34 tokens of 16-wide heads, in another order; 2 layers
        assert_close_to_scale(a.forward_features(x), b.forward_features(x), sum_ulps(34 * 16 + 4 * 32, layers=2))


def test_drop_path_follows_official_schedule_and_only_trains():
    model = ssamba.create_model("ssamba_tiny", depth=4, embed_dim=32, input_tdim=32, drop_path_rate=0.3)
    rates = [layer.drop_path.p for layer in model.layers]
    assert rates == pytest.approx([0.0, 0.0, 0.1, 0.2])  # Vim: [0] + linspace(0, rate, depth)
    assert model.drop_path.p == pytest.approx(0.3)
    x = torch.randn(4, 32, 128)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        outs = [model(x) for _ in range(3)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])
    ssast = ssamba.create_model("ssast_tiny", depth=3, drop_path_rate=0.2)
    assert [blk.drop_path.p for blk in ssast.blocks] == pytest.approx([0.0, 0.1, 0.2])


def test_config_json_round_trip_and_validation():
    config = ssamba.create_model("ssast_tiny", depth=1, features="esc50").config
    again = EncoderConfig.from_dict(config.to_dict())
    assert again == config and again.features == "esc50"
    with pytest.raises(ConfigError, match="model.colour: unknown setting"):
        EncoderConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ConfigError, match="arch"):
        EncoderConfig(arch="cnn")
    with pytest.raises(ConfigError, match="num_heads"):
        EncoderConfig(arch="ssast", embed_dim=64, num_heads=5, num_cls_tokens=2)
    with pytest.raises(ConfigError, match="attention"):
        EncoderConfig(arch="ssast", attention="flash", num_cls_tokens=2)
    with pytest.raises(ConfigError, match="positive"):
        EncoderConfig(fstride=0)
