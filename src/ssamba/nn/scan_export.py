"""Exportable chunked selective scan: static shapes, no data-dependent loops, ONNX-friendly.

Why: tracing the per-token recurrence unrolls L steps (huge graphs, slow to load), and ONNX
Scan/Loop pays a per-step overhead. Here the L tokens are cut into chunks of Q; inside a chunk
the recurrence is closed-form: with S_t the cumulative sum of log-decays delta*A,
    h_t = sum_{s<=t} exp(S_t - S_s) * delta_s u_s B_s + exp(S_t) * h_start,
i.e. a masked (Q x Q) weighting and a matmul-like reduction. Only the L/Q chunk-to-chunk steps
are sequential, unrolled by the tracer with static shapes.

Numerics: delta, softplus and the decays are float32; exp is only ever taken of a difference
of cumulative sums on the causal triangle (S_t - S_s <= 0 because delta >= 0 and A < 0) or of
S_t itself (<= 0), never of a raw sum that could overflow; the anti-causal entries are set to
-inf before exp, so they are exactly 0. Padded steps have delta = 0 (decay 1, no input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 16


def _per_channel(X: torch.Tensor, channels: int) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) -> (batch, E, N, L) with group g
    repeated over its E/G channels (expand + reshape: exports without repeat_interleave)."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    b, G, N, L = X.shape
    if G == 1:
        return X
    return X.unsqueeze(2).expand(b, G, channels // G, N, L).reshape(b, channels, N, L)


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False,
                          chunk_size: int | None = None):
    """Selective scan by closed-form chunks (same contract as ``selective_scan_ref``)."""
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    E, L = u.shape[1], u.shape[2]
    Q = chunk_size or DEFAULT_CHUNK
    chunks = max(1, math.ceil(L / Q))
    pad = chunks * Q - L
    Bx = _per_channel(B, E).transpose(2, 3)                 # (batch, E|1, L, N)
    Cx = _per_channel(C, E).transpose(2, 3)
    xs = delta * u                                          # (batch, E, L)
    if pad:
        delta, xs = F.pad(delta, (0, pad)), F.pad(xs, (0, pad))
        Bx, Cx = F.pad(Bx, (0, 0, 0, pad)), F.pad(Cx, (0, 0, 0, pad))
    causal = torch.ones(Q, Q, dtype=torch.bool).tril()[:, :, None]          # (t, s, 1)
    h = None
    ys = []
    for c in range(chunks):
        sl = slice(c * Q, (c + 1) * Q)
        S = torch.cumsum(delta[:, :, sl, None] * A[:, None, :], dim=2)      # (batch, E, Q, N)
        diff = S[:, :, :, None, :] - S[:, :, None, :, :]                    # (batch, E, t, s, N)
        W = torch.exp(diff.masked_fill(~causal, float("-inf")))
        inputs = xs[:, :, sl, None] * Bx[:, :, sl]                          # (batch, E, Q, N)
        hs = (W * inputs[:, :, None]).sum(3)                                # (batch, E, Q, N)
        if h is not None:
            hs = hs + torch.exp(S) * h[:, :, None]
        ys.append((hs * Cx[:, :, sl]).sum(-1))                              # (batch, E, Q)
        h = hs[:, :, -1]
    y = torch.cat(ys, dim=-1)[:, :, :L] if pad else torch.cat(ys, dim=-1)
    if D is not None:
        y = y + u * D.to(compute)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(dtype_in)
    if return_last_state:
        last = h if h is not None else u.new_zeros(u.shape[0], E, A.shape[1])
        return y, last
    return y
