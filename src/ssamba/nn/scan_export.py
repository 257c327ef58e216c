"""Exportable selective scan: static-shape chunks that trace into a small, fast ONNX graph.

Why: tracing the per-token recurrence unrolls L steps per layer (huge graphs, slow loads) and
the other backends call numba or CUDA. The sequence is cut into K = ceil(L / Q) chunks of Q
tokens (Q ~ sqrt(L)), and every loop has a length fixed at trace time:

1. delta through a softplus that never exponentiates a positive number (float32);
2. each chunk's end state from a zero start, all chunks at once, by the exact recurrence
   h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t (Q unrolled steps);
3. the true start state of every chunk, carried across chunk boundaries with the chunk's
   total decay exp(A * sum of its deltas) (K unrolled steps);
4. the same Q steps again from the true starts, contracted with C at every step.

Every exponent is delta * A or a sum of them, hence <= 0: exp never overflows (it can only
underflow to 0, the true limit). Work and memory are O(batch*E*N*L) like the sequential scan
(the Q x Q masked-matmul form of Mamba-2 would cost Q times more, because Mamba-1's decay differs
per (channel, state) pair). The core, ``chunk_scan_tokens``, is token-major with channels
innermost (what onnxruntime runs fastest: no Transpose, every broadcast over whole rows); the
exported mixer (``nn.mamba_export``) calls it directly, and ``selective_scan_export`` wraps it
behind the channel-major ``selective_scan`` contract for the tests against ``ref``.
"""
from __future__ import annotations

import math

import torch

from ssamba.nn.scan_io import finish_output, prepare_inputs


def default_chunk_size(length: int) -> int:
    """~sqrt(L), clamped to [8, 64]: keeps both unrolled loops short (2 Q in-chunk steps, K carries)."""
    return int(min(64, max(8, round(math.sqrt(max(length, 1))))))


def stable_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) as max(x, 0) + log(1 + e^-|x|): the exponent is never positive."""
    return torch.clamp(x, min=0) + torch.log(1 + torch.exp(-x.abs()))


def chunk_scan_tokens(delta, du, A, B, C, chunk_size: int | None = None):
    """The scan's core, token-major: delta, du = delta * u (b, L, G, Eg), A (G, N, Eg) (<= 0),
    B, C (b, L, G, N) -> y = sum_n C h (b, L, G, Eg) and the last state (b, G, N, Eg).

    Token-major so that the mixer needs no transpose: a chunk's step t is one slice of whole
    rows, and the state (b, K, 1, G, N, Eg) keeps channels innermost, so every broadcast (over
    N for delta and u, over Eg for B and C) runs over whole rows. Two passes over the steps of
    all chunks at once: from zero starts to get each chunk's end, then, once the ends are
    carried across chunks (K steps), from the true starts while contracting with C.
    """
    b, L, G, Eg = delta.shape
    N = A.shape[1]
    Q = chunk_size or default_chunk_size(L)
    K = max(1, math.ceil(L / Q))
    pad = K * Q - L

    def chunked(X, last):   # zero-padded steps add nothing: decay exp(0) = 1, input 0
        if pad:
            X = torch.cat([X, torch.zeros_like(X[:, :1]).expand(X.shape[0], pad, *X.shape[2:])], dim=1)
        return X.reshape(-1, K, Q, G, *last)

    dq, duq = chunked(delta, (1, Eg)), chunked(du, (1, Eg))                 # (b, K, Q, G, 1, Eg)
    Bq, Cq = chunked(B, (N, 1)), chunked(C, (N, 1))                         # (b, K, Q, G, N, 1)
    dq_t, duq_t, B_t, C_t = (X.split(1, dim=2) for X in (dq, duq, Bq, Cq))

    def decay(t):
        return torch.exp(dq_t[t] * A)           # exponent delta * A <= 0: never overflows

    h = duq_t[0] * B_t[0]                       # pass 1: every chunk from a zero start
    for t in range(1, Q):
        h = decay(t) * h + duq_t[t] * B_t[t]
    chunk_decay = torch.exp(dq.sum(dim=2, keepdim=True) * A).split(1, dim=1)
    ends = h.split(1, dim=1)
    carry = ends[0]
    starts = [torch.zeros_like(carry)]
    for k in range(1, K):
        starts.append(carry)
        carry = chunk_decay[k] * carry + ends[k]
    h = torch.cat(starts, dim=1)                # pass 2: from the true starts, contracted with C
    ys = []
    for t in range(Q):
        h = decay(t) * h + duq_t[t] * B_t[t]
        ys.append((h * C_t[t]).sum(dim=4))                                  # (b, K, 1, G, Eg)
    y = torch.cat(ys, dim=2).reshape(-1, K * Q, G, Eg)
    return y[:, :L], carry.reshape(-1, G, N, Eg)


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False, chunk_size: int | None = None):
    """Selective scan by static-shape chunks (same contract as ``selective_scan_ref``).

    Computes in float32 (float64 for float64 inputs), returns the input dtype; the last state
    is in the compute dtype. Differentiable by autograd; traceable by ``torch.onnx.export``
    with a dynamic batch axis. The channel-major contract costs transposes around
    ``chunk_scan_tokens``; the exported mixer calls the core directly.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = prepare_inputs(u, delta, A, B, C, delta_bias, delta_softplus, softplus=stable_softplus)
    E, L = u.shape[1], u.shape[2]
    N = A.shape[1]
    G = 1 if B.dim() == 3 else B.shape[1]
    Eg = E // G

    def tokens(X, inner):   # (b, G * inner, L) -> (b, L, G, inner)
        return X.reshape(-1, G, inner, L).permute(0, 3, 1, 2)

    y, last = chunk_scan_tokens(tokens(delta, Eg), tokens(delta * u, Eg), A.reshape(G, Eg, N).transpose(1, 2),
                                tokens(B, N), tokens(C, N), chunk_size)
    y = finish_output(y.reshape(-1, L, E).transpose(1, 2), u, D, z, dtype_in, silu=lambda v: v * torch.sigmoid(v))
    return (y, last.transpose(2, 3).reshape(-1, E, N)) if return_last_state else y
