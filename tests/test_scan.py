"""Selective-scan backends against the sequential reference: outputs, last state, all gradients."""

from __future__ import annotations

import logging

import pytest
import torch
from tolerances import BF16_EPS, EPS32, assert_close_to_scale, sum_ulps

from ssamba.errors import ConfigError
from ssamba.nn import scan
from ssamba.nn.scan import available_backends, resolve_backend, selective_scan, selective_scan_ref
from ssamba.nn.scan_chunked import selective_scan_chunked

FAST_BACKENDS = [name for name in ("chunked", "fused") if name in available_backends("cpu")]
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, E, L, N, groups=None, *, seed=0, dtype=torch.float32,
                with_D=True, with_z=True, with_bias=True, a_range=(0.1, 2.0), delta_scale=0.5):
    """Random inputs of realistic magnitude; ``groups``: None for (batch, N, L) B/C, else G."""
    g = torch.Generator().manual_seed(seed)
    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    bc_shape = (batch, N, L) if groups is None else (batch, groups, N, L)
    lo, hi = a_range
    inputs = {
        "u": rand(batch, E, L),
        "delta": rand(batch, E, L) * delta_scale,
        "A": -(lo + (hi - lo) * torch.rand(E, N, generator=g, dtype=torch.float64)),
        "B": rand(*bc_shape),
        "C": rand(*bc_shape),
        "D": rand(E) if with_D else None,
        "z": rand(batch, E, L) if with_z else None,
        "delta_bias": rand(E) * 0.3 if with_bias else None,
    }
    return {k: (v.to(dtype) if v is not None else None) for k, v in inputs.items()}


def run_with_grads(fn, inputs, softplus, seed=1):
    """Output, last state and the gradients of a fixed random linear loss of both."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    args = [leaves.get(k) for k in GRAD_NAMES]
    out, last = fn(*args, delta_softplus=softplus, return_last_state=True)
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    w_last = torch.randn(last.shape, generator=g, dtype=torch.float64).to(last.dtype)
    ((out * w_out).sum() + (last * w_last).sum()).backward()
    grads = {k: v.grad for k, v in leaves.items()}
    return out.detach(), last.detach(), grads


def assert_matches(got, want, n, what=""):
    """Output, last state and gradients within ``sum_ulps(n)`` float32 eps of each tensor's scale;
    ``n``: the longest sum, batch·L·N (the gradient of A adds over batch, time and state)."""
    out_g, last_g, grads_g = got
    out_w, last_w, grads_w = want
    assert_close_to_scale(out_g, out_w, sum_ulps(n), f"{what}: output")
    assert_close_to_scale(last_g, last_w, sum_ulps(n), f"{what}: last state")
    assert grads_g.keys() == grads_w.keys()
    for k in grads_w:
        assert_close_to_scale(grads_g[k], grads_w[k], sum_ulps(n), f"{what}: grad {k}")


CASES = [
    # (batch, E, L, N, groups, with_D, with_z, with_bias, softplus)
    (1, 3, 1, 4, None, True, True, True, True),        # L = 1
    (2, 4, 37, 5, None, True, True, True, True),       # odd L, not a multiple of the chunk
    (2, 6, 50, 3, 3, True, False, True, True),         # grouped B/C, G = 3
    (1, 4, 33, 16, 1, False, True, False, False),      # grouped layout with G = 1, N = 16
    (2, 5, 20, 2, None, False, False, False, False),   # bare recurrence
    (1, 8, 64, 7, 2, True, True, False, True),         # softplus without bias, G = 2
    (2, 40, 45, 4, 2, True, True, True, True),         # several channel blocks, a partial one
    (1, 20, 40, 32, None, True, True, True, True),     # N = 32: two 16-state lane-sum tiles
]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}E{}L{}N{}G{}".format(*c[:5]))
def test_backend_matches_reference(backend, case):
    batch, E, L, N, groups, with_D, with_z, with_bias, softplus = case
    inputs = make_inputs(batch, E, L, N, groups, with_D=with_D, with_z=with_z, with_bias=with_bias)
    want = run_with_grads(selective_scan_ref, inputs, softplus)
    got = run_with_grads(lambda *a, **k: selective_scan(*a, **k, backend=backend), inputs, softplus)
    assert_matches(got, want, batch * L * N, what=backend)


@pytest.mark.parametrize("chunk_size", [1, 4, 16, 37, 64])
def test_chunked_any_chunk_size(chunk_size):
    inputs = make_inputs(2, 3, 37, 4, None)
    want = run_with_grads(selective_scan_ref, inputs, True)
    got = run_with_grads(lambda *a, **k: selective_scan_chunked(*a, **k, chunk_size=chunk_size),
                         inputs, True)
    assert_matches(got, want, 2 * 37 * 4, what=f"chunk {chunk_size}")


def test_chunked_gradcheck_float64():
    inputs = make_inputs(1, 2, 7, 2, None, dtype=torch.float64)
    leaves = [inputs[k].clone().requires_grad_(True) for k in GRAD_NAMES]

    def fn(*args):
        out, last = selective_scan_chunked(*args, delta_softplus=True, return_last_state=True,
                                           chunk_size=3)
        return out, last
    # float64 central differences with h = 1e-6: error ~ h**2 + 2e-16 / h ≈ 1e-10 of O(1) values;
    # torch's default atol 1e-5 / rtol 1e-3 still fails any wrong term of the gradient
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("L", [512, pytest.param(8192, marks=pytest.mark.slow)])   # 8192: ~9 s of float64 reference
def test_long_sequence_large_decay_is_finite_and_exact(L):
    """Long L with |A|·delta up to ~100 per step (a cumprod-division scan overflows here)."""
    inputs = make_inputs(1, 2, L, 4, None, seed=3, a_range=(0.01, 60.0), delta_scale=1.0)
    inputs["A"][0, 0] = -1e-3          # one very slow state: long memory must be carried exactly
    want = run_with_grads(selective_scan_ref,
                          {k: v.double() if v is not None else None for k, v in inputs.items()}, True)
    for backend in FAST_BACKENDS:
        got = run_with_grads(lambda *a, **k: selective_scan(*a, **k, backend=backend), inputs, True)
        for t in (got[0], got[1], *got[2].values()):
            assert torch.isfinite(t).all(), backend
        got64 = (got[0].double(), got[1].double(), {k: v.double() for k, v in got[2].items()})
        assert_matches(got64, want, L * 4, what=f"{backend} long L")   # float32 against float64


def test_long_sequence_fast_backends_agree_at_width():
    """Wider E at long L (the float64 reference would be too slow here): chunked == fused."""
    if len(FAST_BACKENDS) < 2:
        pytest.skip("needs both chunked and fused")
    inputs = make_inputs(1, 32, 8192, 16, None, seed=4, a_range=(0.5, 40.0), delta_scale=1.0)
    outs = [selective_scan(*[inputs[k] for k in GRAD_NAMES], delta_softplus=True,
                           return_last_state=True, backend=b) for b in FAST_BACKENDS]
    for t in (*outs[0], *outs[1]):
        assert torch.isfinite(t).all()
    assert_close_to_scale(outs[0][0], outs[1][0], sum_ulps(8192 * 16), "output")   # sums over L·N terms
    assert_close_to_scale(outs[0][1], outs[1][1], sum_ulps(8192 * 16), "last state")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_half_precision_inputs_computed_in_float32(backend):
    inputs = make_inputs(1, 4, 30, 3, None, dtype=torch.bfloat16)
    args = [inputs[k] for k in GRAD_NAMES]
    out = selective_scan(*args, delta_softplus=True, backend=backend)
    assert out.dtype == torch.bfloat16
    want = selective_scan_ref(*[a.float() for a in args], delta_softplus=True).to(torch.bfloat16).float()
    # both round nearly equal float32 results to bfloat16: at most one bfloat16 ulp apart (2**-7
    # relative), plus the float32 differences of a batch·L·N = 90-term scan
    bound = BF16_EPS * want.abs() + sum_ulps(30 * 3) * EPS32 * want.abs().max()
    assert ((out.float() - want).abs() <= bound).all()


def test_backend_choice_argument_beats_env_var(monkeypatch):
    u = torch.zeros(1, 2, 3)
    monkeypatch.setenv(scan.ENV_VAR, "chunked")
    assert resolve_backend(u) == "chunked"
    assert resolve_backend(u, "ref") == "ref"
    monkeypatch.setenv(scan.ENV_VAR, "auto")
    assert resolve_backend(u) == available_backends("cpu")[0]
    monkeypatch.delenv(scan.ENV_VAR)
    assert resolve_backend(u) == ("fused" if "fused" in FAST_BACKENDS else "chunked")


def test_large_state_falls_back_when_automatic():
    inputs = make_inputs(1, 2, 5, 70, None)
    args = [inputs[k] for k in GRAD_NAMES]
    assert_close_to_scale(selective_scan(*args), selective_scan_ref(*args), sum_ulps(5 * 70))   # L·N terms
    if "fused" in FAST_BACKENDS:
        with pytest.raises(ConfigError, match="N <= 64"):
            selective_scan(*args, backend="fused")


def test_backend_choice_errors_name_the_source(monkeypatch):
    u = torch.zeros(1, 2, 3)
    with pytest.raises(ConfigError, match="backend argument.*'nope'"):
        resolve_backend(u, "nope")
    monkeypatch.setenv(scan.ENV_VAR, "nope")
    with pytest.raises(ConfigError, match=scan.ENV_VAR):
        resolve_backend(u)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_backend(u, "cuda")


def test_backend_logged_once_per_backend_device_dtype(caplog, monkeypatch):
    monkeypatch.setattr(scan, "_already_logged", set())
    inputs = make_inputs(1, 2, 4, 2, None)
    args = [inputs[k] for k in GRAD_NAMES]
    with caplog.at_level(logging.INFO, logger="ssamba.nn.scan"):
        for _ in range(3):
            selective_scan(*args, backend="ref")
        selective_scan(*args, backend="chunked")
    messages = [r.getMessage() for r in caplog.records if r.name == "ssamba.nn.scan"]
    assert messages == ["ssamba.nn.scan: using ref scan on cpu, float32",
                        "ssamba.nn.scan: using chunked scan on cpu, float32"]


@pytest.mark.parametrize("bad, match", [
    ({"delta": torch.zeros(1, 4, 9)}, "delta"),
    ({"A": torch.zeros(3, 2)}, "A must be"),
    ({"B": torch.zeros(1, 3, 10)}, "B must be"),
    ({"C": torch.zeros(1, 3, 2, 10)}, "C must be"),     # G = 3 does not divide E = 4
    ({"D": torch.zeros(5)}, "D must be"),
])
def test_bad_shapes_raise_clear_errors(bad, match):
    args = {"u": torch.zeros(1, 4, 10), "delta": torch.zeros(1, 4, 10), "A": torch.zeros(4, 2),
            "B": torch.zeros(1, 2, 10), "C": torch.zeros(1, 2, 10), "D": None}
    args.update(bad)
    with pytest.raises(ConfigError, match=match):
        selective_scan(**args)


@pytest.mark.skipif(not torch.cuda.is_available() or "cuda" not in available_backends("cuda"),
                    reason="needs CUDA and mamba_ssm")
def test_cuda_backend_matches_reference():
    inputs = make_inputs(2, 4, 37, 5, None)
    want = run_with_grads(selective_scan_ref, inputs, True)
    cuda_inputs = {k: v.cuda() if v is not None else None for k, v in inputs.items()}
    out, last, grads = run_with_grads(lambda *a, **k: selective_scan(*a, **k, backend="cuda"),
                                      cuda_inputs, True)
    # mamba_ssm does not propagate a gradient through the last state: compare outputs only there
    assert_close_to_scale(out.cpu(), want[0], sum_ulps(2 * 37 * 5), "output")   # batch·L·N terms
    assert_close_to_scale(last.cpu(), want[1], sum_ulps(2 * 37 * 5), "last state")


@pytest.mark.skipif("fused" not in FAST_BACKENDS, reason="needs numba")
def test_fused_concurrent_calls_from_threads():
    """Launches are serialised inside the fused backend, so threaded callers get correct results."""
    from concurrent.futures import ThreadPoolExecutor
    cases = [make_inputs(1, 20, 40, 4, None, seed=s) for s in range(4)]

    def run(inputs):
        return selective_scan(*[inputs[k] for k in GRAD_NAMES], delta_softplus=True, backend="fused")
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, cases * 2))
    for inputs, out in zip(cases * 2, outs):
        want = selective_scan_ref(*[inputs[k] for k in GRAD_NAMES], delta_softplus=True)
        assert_close_to_scale(out, want, sum_ulps(40 * 4))   # L·N terms per output
