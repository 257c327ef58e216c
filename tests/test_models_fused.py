"""Fused inference path of the bidirectional mixer (``ssamba.nn.bimamba_fused``) against the eager one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_close_to_scale, sum_ulps

import ssamba
from ssamba.nn import bimamba_fused
from ssamba.nn.mamba import FUSED_TRAINING_ENV, BiMamba

torch.set_num_threads(1)


def _mixer(d_model: int, d_conv: int = 4, seed: int = 0) -> BiMamba:
    torch.manual_seed(seed)
    mixer = BiMamba(d_model, d_state=16, d_conv=d_conv, num_layers=4, scan_backend="ref")
    with torch.no_grad():   # non-trivial parameters, different in the two directions
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mixer


@pytest.mark.parametrize("d_model,d_conv,length", [(20, 4, 1), (20, 4, 3), (24, 3, 37), (32, 4, 130)])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_kernel_matches_reference_mixer(d_model, d_conv, length, reverse):
    mixer = _mixer(d_model, d_conv)
    hidden = torch.randn(2, length, d_model)
    with torch.no_grad():
        if reverse:
            expected = mixer._forward_autograd(hidden.flip(1)).flip(1)
        else:
            expected = mixer._forward_autograd(hidden)          # the "ref" sequential scan
        got = bimamba_fused.bimamba_inference(mixer, hidden, reverse)
    assert got.shape == expected.shape
    # longest sums: the scan's L·N (N = 16) and the projections' 2·d_model inputs
    assert_close_to_scale(got, expected, sum_ulps(length * 16 + 2 * d_model))


def test_reverse_is_the_flipped_mixer_and_differs_from_forward():
    mixer = _mixer(32)
    hidden = torch.randn(1, 50, 32)
    with torch.no_grad():
        forward = bimamba_fused.bimamba_inference(mixer, hidden)
        reverse = bimamba_fused.bimamba_inference(mixer, hidden, reverse=True)
        flipped = bimamba_fused.bimamba_inference(mixer, hidden.flip(1)).flip(1)
    assert_close_to_scale(reverse, flipped, sum_ulps(50 * 16 + 2 * 32))
    assert (forward - reverse).abs().max() > 1e-3


def test_dispatch_uses_kernel_only_without_autograd(monkeypatch):
    calls = []
    real = bimamba_fused.bimamba_inference
    monkeypatch.setattr(bimamba_fused, "bimamba_inference", lambda *a: calls.append(1) or real(*a))
    mixer = BiMamba(32, scan_backend="fused")
    hidden = torch.randn(1, 10, 32)
    with torch.no_grad():
        fast = mixer(hidden)
    assert calls == [1]
    slow = mixer(hidden)
    assert calls == [1] and slow.requires_grad
    assert_close_to_scale(fast, slow.detach(), sum_ulps(10 * 16 + 2 * 32))
    with torch.no_grad():
        BiMamba(32, scan_backend="chunked")(hidden)
    assert calls == [1]     # another scan backend was asked for: the eager path runs


@pytest.mark.parametrize("frames", [16, 64])
def test_encoder_no_grad_equals_autograd_forward(frames):
    torch.manual_seed(1)
    model = ssamba.create_model("ssamba_tiny", depth=4).eval()
    fbank = torch.randn(2, frames, 128)
    with torch.no_grad():
        fast = model.forward_features(fbank)
    slow = model.forward_features(fbank)
    assert slow.requires_grad
    tokens = (frames // 16) * 8 + 1   # patches + CLS; width 192; 4 layers compound
    assert_close_to_scale(fast, slow.detach(), sum_ulps(tokens * 16 + 2 * 192, layers=4))


@pytest.mark.parametrize("batch,channels,length,taps", [(1, 5, 1, 4), (2, 7, 9, 4), (3, 4, 40, 3)])
def test_conv_silu_kernel_forward_and_gradients_match_torch(batch, channels, length, taps):
    from ssamba.nn.conv_fused import causal_conv1d_silu
    torch.manual_seed(2)
    x = torch.randn(batch, channels, length, requires_grad=True)
    weight = torch.randn(channels, taps, requires_grad=True)
    bias = torch.randn(channels, requires_grad=True)
    grad_out = torch.randn(batch, channels, length)
    want = F.silu(F.conv1d(x, weight[:, None], bias, padding=taps - 1, groups=channels)[..., :length])
    want_grads = torch.autograd.grad(want, (x, weight, bias), grad_out)
    got = causal_conv1d_silu(x, weight, bias)
    got_grads = torch.autograd.grad(got, (x, weight, bias), grad_out)
    assert_close_to_scale(got, want, sum_ulps(taps))   # a sum over the taps, then SiLU
    for g, w in zip(got_grads, want_grads):   # the weight's and bias's gradients add over batch and time
        assert_close_to_scale(g, w, sum_ulps(batch * length * taps))


@pytest.mark.parametrize("fused_training", ["1", "0"])
def test_mixer_gradients_fused_path_match_reference_backend(fused_training, monkeypatch):
    """Both CPU training paths (the fused Function, and the eager one: numba conv + fused scan),
    reverse=True, against the sequential reference scan on the explicitly flipped problem."""
    monkeypatch.setenv(FUSED_TRAINING_ENV, fused_training)
    mixer = _mixer(24)
    hidden = torch.randn(2, 30, 24, requires_grad=True)
    weights = torch.linspace(-1, 1, 24)

    def grads(backend, run):
        mixer.scan_backend = backend
        mixer.zero_grad()
        hidden.grad = None
        (run() * weights).sum().backward()
        return [hidden.grad.clone()] + [p.grad.clone() for p in mixer.parameters()]

    got = grads("fused", lambda: mixer(hidden, reverse=True))
    want = grads("ref", lambda: mixer(hidden.flip(1)).flip(1))
    for g, w in zip(got, want):   # parameter gradients add over batch·L·N; the projections over 2·d_model
        assert_close_to_scale(g, w, sum_ulps(2 * 30 * 16 + 2 * 24))
