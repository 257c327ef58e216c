"""Chunked selective scan in eager PyTorch: runs on any device, differentiable by autograd.

Why: the sequential reference takes L Python steps. Here the sequence is cut into chunks of T
steps and every chunk is scanned at once from a zero state (T Python steps), then the chunk
start states are carried across chunks (L / T steps) and added back through the cumulative
decay. With T ≈ √L that is ~2√L steps instead of L.

Numerically stable for long L and large |A|·delta: every factor is a product of decays
exp(ΣΔA) over a span inside one chunk (computed as exp of a cumulative sum, so it can only
underflow to 0, which is the true value) — there is never a division by a cumulative product.
Memory is O(batch·E·L·N): this is the portable fallback, the fused CPU kernel is the fast path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def default_chunk_size(length: int) -> int:
    """~√L, clamped to [16, 256]: balances the in-chunk and across-chunk sequential loops."""
    return int(min(256, max(16, round(math.sqrt(max(length, 1))))))


def _time_major(X: torch.Tensor, channels: int) -> torch.Tensor:
    """B or C as (batch, E or 1, L, N): groups repeated over their channels."""
    if X.dim() == 3:
        return X.unsqueeze(1).transpose(-1, -2)
    return X.repeat_interleave(channels // X.shape[1], dim=1).transpose(-1, -2)


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                           delta_softplus=False, return_last_state=False,
                           chunk_size: int | None = None):
    """Selective scan by chunks (same contract as ``selective_scan_ref``).

    Computes in float32 (float64 when the input is float64, e.g. for gradcheck) and returns the
    input dtype; the last state is in the compute dtype.
    """
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, E, L = u.shape
    N = A.shape[1]
    T = chunk_size or default_chunk_size(L)
    chunks = max(1, math.ceil(L / T))
    pad = chunks * T - L

    log_decay = delta.unsqueeze(-1) * A[None, :, None, :]                        # (batch, E, L, N)
    inputs = (delta * u).unsqueeze(-1) * _time_major(B, E)                       # (batch, E, L, N)
    # Padded steps have decay 1 and no input, so they leave the state unchanged.
    log_decay = F.pad(log_decay, (0, 0, 0, pad)).view(batch, E, chunks, T, N)
    inputs = F.pad(inputs, (0, 0, 0, pad)).view(batch, E, chunks, T, N)
    decay = torch.exp(log_decay)

    # 1. every chunk scanned from a zero state, all chunks at once
    h = inputs.new_zeros(batch, E, chunks, N)
    local = []
    for t in range(T):
        h = decay[:, :, :, t] * h + inputs[:, :, :, t]
        local.append(h)
    local_states = torch.stack(local, dim=3)                                     # (batch, E, chunks, T, N)

    # 2. carry the state across chunk boundaries
    span_decay = torch.exp(torch.cumsum(log_decay, dim=3))                       # chunk start -> t
    carry = inputs.new_zeros(batch, E, N)
    starts = []
    for c in range(chunks):
        starts.append(carry)
        carry = span_decay[:, :, c, -1] * carry + local_states[:, :, c, -1]
    start_states = torch.stack(starts, dim=2)                                    # (batch, E, chunks, N)

    states = local_states + span_decay * start_states.unsqueeze(3)
    states = states.reshape(batch, E, chunks * T, N)[:, :, :L]
    y = (states * _time_major(C, E)).sum(-1)                                     # (batch, E, L)
    if D is not None:
        y = y + u * D.to(compute)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(dtype_in)
    return (y, carry) if return_last_state else y
