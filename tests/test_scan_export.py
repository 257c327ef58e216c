"""The exportable chunked scan (``scan_export``) against the sequential reference."""

from __future__ import annotations

import pytest
import torch
from tolerances import assert_close_to_scale, sum_ulps

from ssamba.nn.scan import selective_scan, selective_scan_ref
from ssamba.nn.scan_export import selective_scan_export


def _inputs(batch, E, L, N, groups, seed=0, large_decay=False):
    g = torch.Generator().manual_seed(seed)
    def r(*shape):
        return torch.randn(*shape, generator=g)

    u, delta, z = r(batch, E, L), r(batch, E, L) * 0.5, r(batch, E, L)
    A = -torch.rand(E, N, generator=g) * (50.0 if large_decay else 2.0) - 0.1
    shape = (batch, N, L) if groups is None else (batch, groups, N, L)
    return u, delta, A, r(*shape), r(*shape), r(E), z, r(E) * 0.1


CASES = [(2, 6, 37, 4, None), (1, 8, 64, 16, 2), (3, 4, 5, 3, 1), (2, 8, 100, 16, 2)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}E{}L{}N{}G{}".format(*c))
@pytest.mark.parametrize("chunk", [4, 16, 64])
def test_export_scan_matches_reference(case, chunk):
    u, delta, A, B, C, D, z, bias = _inputs(*case)
    want, want_h = selective_scan_ref(u, delta, A, B, C, D, z, bias, True, True)
    got, got_h = selective_scan_export(u, delta, A, B, C, D, z, bias, True, True, chunk_size=chunk)
    _, _, L, N, _ = case   # each output: float32 sums over L steps and N states, in another order
    assert_close_to_scale(got, want, sum_ulps(L * N), "output")
    assert_close_to_scale(got_h, want_h, sum_ulps(L * N), "last state")


def test_export_scan_large_decay_is_finite_and_exact():
    """|A|*delta up to ~100 per step: exp of raw cumulative sums would underflow/overflow;
    differences of cumulative sums stay exact."""
    u, delta, A, B, C, D, z, bias = _inputs(2, 4, 80, 8, None, large_decay=True)
    delta = delta.abs() * 4
    want = selective_scan_ref(u, delta, A, B, C, D, z, None, False)
    got = selective_scan_export(u, delta, A, B, C, D, z, None, False, chunk_size=32)
    assert torch.isfinite(got).all()
    assert_close_to_scale(got, want, sum_ulps(80 * 8))   # L·N


def test_export_backend_is_registered():
    u, delta, A, B, C, D, z, bias = _inputs(1, 4, 20, 4, None)
    want = selective_scan_ref(u, delta, A, B, C, D, z, bias, True)
    got = selective_scan(u, delta, A, B, C, D, z, bias, True, backend="export")
    assert_close_to_scale(got, want, sum_ulps(20 * 4))   # L·N


@pytest.mark.parametrize("length", [1, 7, 50])
def test_token_major_export_mixer_equals_the_eager_mixer(length):
    """The mixer ONNX export traces (token-major, chunked scan) equals the eager mixer; swapping the
    directions' parameters changes it (so the two directions are not mixed up)."""
    from ssamba.nn.mamba import BiMamba
    from ssamba.nn.mamba_export import bimamba_export_forward

    torch.manual_seed(length)
    mixer = BiMamba(24, d_state=8, scan_backend="ref").eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(torch.randn_like(p) * 0.1)   # the two directions' parameters differ everywhere
    h = torch.randn(2, length, 24)
    with torch.no_grad():
        want = mixer._forward_autograd(h)
        got = bimamba_export_forward(mixer, h)
        assert_close_to_scale(got, want, sum_ulps(length * 8))   # L·N
        for a, b in (("A_log", "A_b_log"), ("D", "D_b")):
            pa, pb = getattr(mixer, a), getattr(mixer, b)
            pa_old = pa.clone()
            pa.copy_(pb)
            pb.copy_(pa_old)
        if length > 1:
            assert (bimamba_export_forward(mixer, h) - want).abs().max().item() > 1e-3
