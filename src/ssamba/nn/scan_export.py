"""Exportable selective scan: static-shape chunks that trace into a small, fast ONNX graph.

Why: tracing the per-token recurrence unrolls L steps per layer (huge graphs, slow loads) and
the other backends call numba or CUDA. The sequence is cut into K = ceil(L / Q) chunks of Q
tokens (Q ~ sqrt(L)), and every loop has a length fixed at trace time:

1. delta through a softplus that never exponentiates a positive number (float32), and the
   cumulative log-decays S_t = A * cumsum(delta) from each chunk's start;
2. each chunk's states from a zero start, all chunks at once, by the exact recurrence
   h_t = exp(a_t) h_{t-1} + delta_t B_t u_t (Q unrolled steps), contracted with C on the fly;
3. the true start state of every chunk, carried across chunk boundaries with the chunk's
   total decay exp(S_end) (K unrolled steps);
4. the start's contribution to every output, sum_n C_t exp(S_t) start (no sequential loop).

Every exponent is a log-decay or a cumulative sum of them from a chunk start, hence <= 0:
exp never overflows (it can only underflow to 0, the true limit). Work and memory are
O(batch*E*N*L) like the sequential scan; the Q x Q masked-matmul form of Mamba-2 costs Q times
more here, because Mamba-1's decay differs per (channel, state) pair. Layout
(batch, G, E/G, Q, K, N): step t of every chunk is one contiguous block and grouped B/C
broadcast over their channels, so onnxruntime needs no large Transpose or Expand.
"""
from __future__ import annotations

import math

import torch


def default_chunk_size(length: int) -> int:
    """~sqrt(L), clamped to [8, 64]: balances the two unrolled loops (Q + K steps)."""
    return int(min(64, max(8, round(math.sqrt(max(length, 1))))))


def stable_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) as max(x, 0) + log(1 + e^-|x|): the exponent is never positive."""
    return torch.clamp(x, min=0) + torch.log(1 + torch.exp(-x.abs()))


def _steps_major(X, K, Q):
    """(..., L) -> (..., Q, K): zero-padded to K·Q steps, step-in-chunk before chunk."""
    pad = K * Q - X.shape[-1]
    if pad:
        X = torch.cat([X, torch.zeros_like(X[..., :1]).expand(*X.shape[:-1], pad)], dim=-1)
    return X.reshape(*X.shape[:-1], K, Q).transpose(-1, -2)


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False, chunk_size: int | None = None):
    """Selective scan by static-shape chunks (same contract as ``selective_scan_ref``).

    Computes in float32 (float64 for float64 inputs), returns the input dtype; the last state
    is in the compute dtype. Differentiable by autograd; traceable by ``torch.onnx.export``
    with a dynamic batch axis.
    """
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[None, :, None]
    if delta_softplus:
        delta = stable_softplus(delta)
    E, L = u.shape[1], u.shape[2]
    N = A.shape[1]
    G = 1 if B.dim() == 3 else B.shape[1]
    Eg = E // G
    Q = chunk_size or default_chunk_size(L)
    K = max(1, math.ceil(L / Q))
    dq = _steps_major(delta, K, Q).reshape(-1, G, Eg, Q, K, 1)
    duq = _steps_major(delta * u, K, Q).reshape(-1, G, Eg, Q, K, 1)
    Bq = _steps_major(B.reshape(-1, G, N, L), K, Q).permute(0, 1, 3, 4, 2).unsqueeze(2)   # (b, G, 1, Q, K, N)
    Cq = _steps_major(C.reshape(-1, G, N, L), K, Q).permute(0, 1, 3, 4, 2).unsqueeze(2)
    A6 = A.reshape(G, Eg, 1, 1, N)
    dq_t, duq_t, B_t, C_t = (X.split(1, dim=3) for X in (dq, duq, Bq, Cq))  # small tensors only
    h = duq_t[0] * B_t[0]                                                # (b, G, Eg, 1, K, N)
    ys = [(h * C_t[0]).sum(-1)]
    for t in range(1, Q):
        h = torch.exp(dq_t[t] * A6) * h + duq_t[t] * B_t[t]
        ys.append((h * C_t[t]).sum(-1))
    y = torch.cat(ys, dim=3)                                             # (b, G, Eg, Q, K)
    cum = torch.cumsum(dq, dim=3) * A6                                   # S_t = A * sum of delta, <= 0
    chunk_decay = torch.exp(cum[:, :, :, Q - 1:]).split(1, dim=4)
    ends = h.split(1, dim=4)
    carry = ends[0]
    starts = [torch.zeros_like(carry)]
    for k in range(1, K):
        starts.append(carry)
        carry = chunk_decay[k] * carry + ends[k]
    start = torch.cat(starts, dim=4)
    y = y + (torch.exp(cum) * start * Cq).sum(-1)
    y = y.transpose(-1, -2).reshape(-1, E, K * Q)[:, :, :L]
    if D is not None:
        y = y + u * D.to(compute)[None, :, None]
    if z is not None:
        y = y * (z.to(compute) * torch.sigmoid(z.to(compute)))
    y = y.to(dtype_in)
    return (y, carry.reshape(-1, E, N)) if return_last_state else y
