"""Fused training core of the bidirectional mixer (``ssamba.nn.bimamba_train``) against the
reference mixer in float64: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch

import ssamba
from ssamba.nn.bimamba_train import bimamba_train
from ssamba.nn.mamba import FUSED_TRAINING_ENV, BiMamba

torch.set_num_threads(1)
# float32 kernels against a float64 reference: relative to each gradient's largest entry, the
# error is float32 rounding accumulated over ~L·N terms (and the 3e-7 exp2 polynomial): 1e-4.
RTOL = 1e-4


def _mixer(d_model: int, seed: int = 0) -> BiMamba:
    torch.manual_seed(seed)
    mixer = BiMamba(d_model, d_state=16, num_layers=4, scan_backend="fused")
    with torch.no_grad():   # non-trivial parameters, different in the two directions
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mixer


def _assert_close_to(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    scale = expected.abs().max().item()
    assert (got.double() - expected).abs().max().item() <= RTOL * max(scale, 1e-6), name


# E = 2·d_model channels in blocks of 16: 40 leaves a partial block; L = 1 and L > 32 (several
# checkpoint segments); batch > 1 with different clips.
@pytest.mark.parametrize("batch,length,d_model", [(1, 1, 20), (2, 37, 24), (3, 70, 20)])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_training_core_matches_reference_gradients(batch, length, d_model, reverse):
    mixer = _mixer(d_model)
    hidden = torch.randn(batch, length, d_model, requires_grad=True)
    out = bimamba_train(mixer, hidden, reverse)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, *mixer.parameters()])

    ref = BiMamba(d_model, d_state=16, num_layers=4, scan_backend="ref").double()
    ref.load_state_dict(mixer.state_dict())
    hidden64 = hidden.detach().double().requires_grad_()
    expected = ref._forward_autograd(hidden64.flip(1)).flip(1) if reverse else ref._forward_autograd(hidden64)
    ref_grads = torch.autograd.grad((expected * weights.double()).sum(), [hidden64, *ref.parameters()])

    _assert_close_to(out, expected, "output")
    names = ["hidden"] + [n for n, _ in mixer.named_parameters()]
    for name, got, want in zip(names, grads, ref_grads):
        if length > 1:  # (at L = 1 the decay never acts: dA = 0) every parameter is exercised
            assert want.abs().max() > 0, name
        _assert_close_to(got, want, name)


def test_whole_encoder_gradients_through_the_fused_core(monkeypatch):
    """A 2-layer SSAMBA (one flipped pair) incl. positional embedding: fused core vs eager path."""
    torch.manual_seed(0)
    model = ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=48).train()
    fbank = torch.randn(2, 48, 128)

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        model(fbank).pow(2).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    fused = grads()                             # the default training path
    monkeypatch.setenv(FUSED_TRAINING_ENV, "0")
    eager = grads()
    names = [n for n, _ in model.named_parameters()]
    assert "pos_embed" in names
    for name, got, want in zip(names, fused, eager):
        # two float32 implementations: the bound is twice the float32-vs-float64 one
        assert (got - want).abs().max() <= 2 * RTOL * max(want.abs().max().item(), 1e-6), name
