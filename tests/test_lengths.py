"""Mixed-length batches (``lengths=``): every clip of a padded batch gives exactly what it gives alone.

The independent reference is each clip run alone at its own length (no lengths involved). For
SSAMBA (fused kernels with and without autograd, the eager path with the fused, chunked and
sequential scans) and SSAST (SDPA and naive attention), a batch of clips of different lengths,
with random values in the padding, must give each clip's tokens, every pooling and the
parameter gradients of a loss summed over clips equal to the clips alone.
"""

from __future__ import annotations

import pytest
import torch
from tolerances import assert_close_to_scale, sum_ulps

import ssamba
from ssamba.errors import ConfigError
from ssamba.models.encoder import pool_tokens
from ssamba.nn.lengths import flip_clips
from ssamba.nn.mamba import FUSED_TRAINING_ENV

torch.set_num_threads(1)

WINDOW = 128                 # frames: 8 time columns of 16-frame patches
# one time column, a few frames past 3 whole patches, the full window, one in between
LENGTHS = [16, 16 * 3 + 5, WINDOW, 100]
BINS = 32                    # 2 frequency bands


def _model(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(embed_dim=16, depth=4, input_fdim=BINS, input_tdim=WINDOW, drop_path_rate=0.0)
    extra = dict(d_state=8) if arch == "ssamba" else dict(num_heads=2)
    model = ssamba.create_model(f"{arch}_tiny", **common, **extra, **overrides).eval()
    with torch.no_grad():     # a trained-looking model: no zero biases, distinct directions
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _batch(lengths=LENGTHS) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    fbank = torch.randn(len(lengths), max(lengths) + 3, BINS)   # longer than every clip: all padding
    return fbank, torch.tensor(lengths)


MODES = {  # name -> (arch, config overrides, env)
    "ssamba-fused": ("ssamba", dict(scan_backend="fused"), {}),
    "ssamba-eager-fused-scan": ("ssamba", dict(scan_backend="fused"), {FUSED_TRAINING_ENV: "0"}),
    "ssamba-chunked": ("ssamba", dict(scan_backend="chunked"), {}),
    "ssamba-ref": ("ssamba", dict(scan_backend="ref"), {}),
    "ssast-sdpa": ("ssast", dict(attention="sdpa"), {}),
    "ssast-naive": ("ssast", dict(attention="naive"), {}),
}


def _setup(mode: str, monkeypatch) -> torch.nn.Module:
    arch, overrides, env = MODES[mode]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return _model(arch, **overrides)


def _tolerance(model, terms: int) -> float:
    """``terms``: the longest sum, e.g. a clip's tokens x width (the scan's L·N with N <= D, the
    attention's keys x head width) or, for a weight gradient, every token of the batch x width."""
    return sum_ulps(terms, layers=model.config.depth)


@pytest.mark.parametrize("mode", list(MODES))
def test_tokens_and_poolings_equal_each_clip_alone(mode, monkeypatch):
    model = _setup(mode, monkeypatch)
    fbank, lengths = _batch()
    counts = model.token_lengths(lengths)
    with torch.no_grad():
        tokens = model.forward_features(fbank, lengths=lengths)
        layers = model.forward_layers(fbank, lengths=lengths)
        pooled = {p: pool_tokens(model, tokens, p, lengths) for p in ("mean", "mean_std", "bands")}
        official = model(fbank, lengths=lengths)
    assert tokens.shape[1] == int(counts.max())                 # as long as the longest clip
    assert_close_to_scale(layers[-1], tokens, 0, "last layer = forward_features")
    for b, frames in enumerate(lengths.tolist()):
        clip = fbank[b:b + 1, :frames]
        with torch.no_grad():
            alone = model.forward_features(clip)
            alone_layers = model.forward_layers(clip)
        n = alone.shape[1]
        assert n == int(counts[b])
        tol = _tolerance(model, n * model.config.embed_dim)
        assert_close_to_scale(tokens[b:b + 1, :n], alone, tol, f"{mode} clip {frames} frames: tokens")
        assert not tokens[b, n:].any(), "padding tokens are zeros"
        for k, (got, want) in enumerate(zip(layers, alone_layers)):
            assert_close_to_scale(got[b:b + 1, :n], want, tol, f"{mode} clip {frames}: layer {k}")
        for name, value in pooled.items():
            assert_close_to_scale(value[b:b + 1], pool_tokens(model, alone, name), tol,
                                  f"{mode} clip {frames} frames: {name} pooling")
        assert_close_to_scale(official[b:b + 1], model(clip), tol, f"{mode} clip {frames}: forward")


@pytest.mark.parametrize("mode", list(MODES))
def test_parameter_gradients_equal_the_sum_over_clips_alone(mode, monkeypatch):
    model = _setup(mode, monkeypatch)
    fbank, lengths = _batch()
    torch.manual_seed(2)
    weights = torch.randn(len(lengths), int(model.token_lengths(lengths).max()), model.config.embed_dim)
    bands = pool_tokens(model, model.forward_features(fbank[:1, :WINDOW]), "bands").shape[1]
    band_w = torch.randn(bands)

    def loss(tokens, clip_lengths, rows):
        n = tokens.shape[1]
        return ((tokens * weights[rows, :n]).sum() + pool_tokens(model, tokens, "mean_std", clip_lengths).sum()
                + (pool_tokens(model, tokens, "bands", clip_lengths) @ band_w).sum())

    model.zero_grad()
    loss(model.forward_features(fbank, lengths=lengths), lengths, slice(None)).backward()
    batched = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    for b, frames in enumerate(lengths.tolist()):
        clip = fbank[b:b + 1, :frames]
        loss(model.forward_features(clip), None, slice(b, b + 1)).backward()
    tol = _tolerance(model, len(lengths) * int(model.token_lengths(lengths).max()) * model.config.embed_dim)
    for name, p in model.named_parameters():
        assert_close_to_scale(batched[name], p.grad, tol, f"{mode}: gradient of {name}")


def test_input_gradient_stays_in_each_clips_frames(monkeypatch):
    """The padding frames get no gradient: nothing of them reaches any clip's tokens."""
    model = _setup("ssamba-fused", monkeypatch)
    fbank, lengths = _batch()
    fbank.requires_grad_(True)
    model.forward_features(fbank, lengths=lengths).sum().backward()
    for b, frames in enumerate(lengths.tolist()):
        used = (frames - 16) // 16 * 16 + 16                      # frames the clip's patches cover
        assert not fbank.grad[b, used:].any()
        assert fbank.grad[b, :used].abs().sum() > 0


def test_full_lengths_equal_no_lengths():
    model = _model("ssamba", scan_backend="fused")
    fbank = torch.randn(2, WINDOW, BINS)
    with torch.no_grad():
        plain = model.forward_features(fbank)
        full = model.forward_features(fbank, lengths=[WINDOW, WINDOW])
    assert_close_to_scale(full, plain, _tolerance(model, plain.shape[1] * model.config.embed_dim))


def test_mixed_lengths_differ_from_padding_to_the_window():
    """The point of lengths: a bidirectional model's padded window is not the clip alone."""
    model = _model("ssamba", scan_backend="fused")
    fbank, lengths = _batch()
    with torch.no_grad():
        native = model(fbank[:, :WINDOW], lengths=lengths)
        padded = model(fbank[:, :WINDOW])
    assert (native[:2] - padded[:2]).abs().max() > 1e-3


def test_flip_clips_reverses_each_clip_within_its_length():
    x = torch.arange(10.0).view(2, 5)
    got = flip_clips(x, torch.tensor([3, 5]), dim=1)
    assert got.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]
    assert torch.equal(flip_clips(got, torch.tensor([3, 5]), dim=1), x)


def test_pretraining_mask_and_patches_follow_the_mixed_layout(monkeypatch):
    model = _setup("ssast-sdpa", monkeypatch)
    fbank, lengths = _batch()
    patches = model.patchify(fbank, lengths)
    counts = model.token_lengths(lengths) - model.num_cls_tokens
    mask = torch.zeros(patches.shape[:2], dtype=torch.bool)
    mask[:, 1] = True
    mask_embed = torch.randn(1, 1, model.config.embed_dim)
    with torch.no_grad():
        tokens = model.forward_features(fbank, mask, mask_embed, lengths=lengths)
    for b, frames in enumerate(lengths.tolist()):
        clip = fbank[b:b + 1, :frames]
        n = int(counts[b])
        assert torch.equal(patches[b:b + 1, :n], model.patchify(clip))
        assert not patches[b, n:].any()
        with torch.no_grad():
            alone = model.forward_features(clip, mask[b:b + 1, :n], mask_embed)
        total = n + model.num_cls_tokens
        assert_close_to_scale(tokens[b:b + 1, :total], alone, _tolerance(model, total * model.config.embed_dim))


def test_bad_lengths_are_one_line_errors():
    model = _model("ssast")
    fbank = torch.randn(2, 64, BINS)
    with pytest.raises(ConfigError, match="shorter than one patch"):
        model(fbank, lengths=[10, 64])
    with pytest.raises(ConfigError, match="longer than the 64-frame input"):
        model(fbank, lengths=[65, 64])
    with pytest.raises(ConfigError, match="2 clips"):
        model(fbank, lengths=[64])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_mixer_with_lengths_equals_the_reference_mixer_on_each_clip(training, reverse):
    """The kernels themselves, at a width that is not a multiple of their 16 lanes (inert lanes),
    against the sequential reference scan on each clip alone (forward and gradients)."""
    from ssamba.nn.mamba import BiMamba

    torch.manual_seed(3)
    mixer = BiMamba(20, d_state=16, num_layers=4, scan_backend="fused")
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    lengths = torch.tensor([1, 37, 64, 5, 33])
    hidden = torch.randn(len(lengths), 64, 20)
    weights = torch.randn(len(lengths), 64, 20)
    with torch.set_grad_enabled(training):
        out = mixer(hidden, reverse=reverse, lengths=lengths)
    assert not out[0, 1:].any() and not out[3, 5:].any()
    if training:
        (out * weights).sum().backward()
        fused_grads = {n: p.grad.clone() for n, p in mixer.named_parameters()}
        mixer.zero_grad()
    mixer.scan_backend = "ref"
    tol = sum_ulps(64 * 16 + 2 * 20)
    for b, n in enumerate(lengths.tolist()):
        with torch.set_grad_enabled(training):
            alone = mixer(hidden[b:b + 1, :n], reverse=reverse)
        assert_close_to_scale(out[b:b + 1, :n], alone, tol, f"clip of {n} tokens")
        if training:
            (alone * weights[b:b + 1, :n]).sum().backward()
    if training:
        for name, p in mixer.named_parameters():
            assert_close_to_scale(fused_grads[name], p.grad, sum_ulps(len(lengths) * 64 * 16 + 2 * 20),
                                  f"gradient of {name}")
