"""Float32 tolerances for the numeric tests: relative to the values' scale and derived from the
number of accumulated operations, so no constant is tuned to one machine's output.

Two float32 computations of the same quantity differ by rounding. For a sum of ``n`` terms done
in another order the error is about ``sqrt(n)`` roundings of the terms' size (random-signed
errors; Higham, Accuracy and Stability, sec. 3.5), ``n`` in the worst case; elementwise chains
(exp, softplus, SiLU, LayerNorm) add a few roundings each. We compare the error with the largest
value of the tensor (its scale), because a sum's error scales with its terms, not with its result
(an entry near zero after cancellation is as inexact as its terms are large)."""

from __future__ import annotations

import math

import torch

EPS32 = torch.finfo(torch.float32).eps   # 2**-23 ≈ 1.19e-7: one float32 rounding, relative
BF16_EPS = 2.0 ** -7                     # one bfloat16 ulp (8-bit significand), relative
ELEMENTWISE_ULPS = 64                    # exp/softplus/SiLU/LayerNorm chains along one value's path


def sum_ulps(n: int, layers: int = 1) -> float:
    """Tolerance, in float32 eps of the scale, for a value built from float32 sums of up to ``n``
    terms through ``layers`` stacked blocks: ``layers * (64 + 10 sqrt(n))``. The factor 10 covers
    CPUs that order the same sums differently (vector width, FMA), not one machine's measurement."""
    return layers * (ELEMENTWISE_ULPS + 10.0 * math.sqrt(max(n, 1)))


def error_in_ulps(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| in float32 eps of ``want``'s scale (its largest magnitude)."""
    assert got.shape == want.shape, (tuple(got.shape), tuple(want.shape))
    want64 = want.detach().double()
    scale = max(want64.abs().max().item(), torch.finfo(torch.float32).tiny)
    return (got.detach().double() - want64).abs().max().item() / (scale * EPS32)


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, ulps: float, what: str = "") -> None:
    """|got - want| <= ulps * EPS32 * max|want| everywhere (see the module docstring)."""
    err = error_in_ulps(got, want)
    assert err <= ulps, f"{what}: {err:.1f} float32 eps of the scale, allowed {ulps:.0f}"
