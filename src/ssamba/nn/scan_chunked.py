"""Chunked selective scan in eager PyTorch: runs on any device, differentiable by autograd.

Why: the sequential reference takes L Python steps on small tensors. Here the sequence is cut
into chunks of T steps and all chunks advance together: (1) every chunk is scanned from a zero
state (T steps) to get the state it adds; (2) the true start state of each chunk is carried
across chunk boundaries (L / T steps) with the chunk's total decay exp(ΣΔA); (3) every chunk is
scanned again from its true start (T steps), producing the outputs. With T ≈ √L that is ~3√L
steps instead of L, each on a (chunks, batch, E, N) working set that stays in cache.

Numerically stable for long L and large |A|·delta: it is the exact recurrence h = e^{ΔA} h + ΔBu
inside chunks, and across chunks a product of decays (which can only underflow to 0, the true
value) — never a division by a cumulative product. Memory: O(batch·E·L·N) for the decays and
inputs (and autograd's saved states); the fused CPU kernel is the fast, O(L·E) path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssamba.nn.scan_io import finish_output, prepare_inputs


def default_chunk_size(length: int) -> int:
    """~√L, clamped to [16, 256]: balances the in-chunk and across-chunk sequential loops."""
    return int(min(256, max(16, round(math.sqrt(max(length, 1))))))


def _chunk_major(X: torch.Tensor, chunks: int, T: int) -> torch.Tensor:
    """(..., L) -> (T, chunks, ...) contiguous, zero-padded to chunks·T steps, so that the
    sequential loops below slice contiguous memory."""
    pad = chunks * T - X.shape[-1]
    X = F.pad(X, (0, pad)).reshape(*X.shape[:-1], chunks, T)
    dims = list(range(X.dim() - 2))
    return X.permute(X.dim() - 1, X.dim() - 2, *dims).contiguous()


def _per_channel(X: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., G, N) -> (..., E, N) by repeating each group over its channels (G = 1 broadcasts)."""
    groups = X.shape[-2]
    return X if groups == 1 else X.repeat_interleave(channels // groups, dim=-2)


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                           delta_softplus=False, return_last_state=False,
                           chunk_size: int | None = None):
    """Selective scan by chunks (same contract as ``selective_scan_ref``).

    Computes in float32 (float64 when the input is float64, e.g. for gradcheck) and returns the
    input dtype; the last state is in the compute dtype.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = prepare_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, E, L = u.shape
    N = A.shape[1]
    T = chunk_size or default_chunk_size(L)
    chunks = max(1, math.ceil(L / T))

    # Everything below is laid out (T, chunks, batch, E, N). Padded steps have delta = 0:
    # decay 1 and no input, so they leave the state unchanged.
    delta_t = _chunk_major(delta, chunks, T)                                     # (T, chunks, batch, E)
    log_decay = delta_t.unsqueeze(-1) * A                                        # (T, chunks, batch, E, N)
    B_t = _chunk_major(B if B.dim() == 4 else B.unsqueeze(1), chunks, T)        # (T, chunks, batch, G, N)
    C_t = _chunk_major(C if C.dim() == 4 else C.unsqueeze(1), chunks, T)
    B_t = _per_channel(B_t, E)                                                   # (T, chunks, batch, E|1, N)
    C_t = _per_channel(C_t, E)
    inputs = (delta_t * _chunk_major(u, chunks, T)).unsqueeze(-1) * B_t          # (T, chunks, batch, E, N)
    decay = torch.exp(log_decay)

    # 1. per chunk, all chunks at once: the state reached from a zero start, and the total decay
    h = inputs.new_zeros(chunks, batch, E, N)
    for t in range(T):
        h = decay[t] * h + inputs[t]
    chunk_decay = torch.exp(log_decay.sum(0))                                    # (chunks, batch, E, N)

    # 2. the true start state of every chunk, carried across chunk boundaries
    carry = inputs.new_zeros(batch, E, N)
    starts = []
    for c in range(chunks):
        starts.append(carry)
        carry = chunk_decay[c] * carry + h[c]

    # 3. the exact recurrence again inside every chunk, now from its true start state
    h = torch.stack(starts)                                                      # (chunks, batch, E, N)
    ys = []
    for t in range(T):
        h = decay[t] * h + inputs[t]
        ys.append((h * C_t[t]).sum(-1))
    y = torch.stack(ys)                                                          # (T, chunks, batch, E)
    y = finish_output(y.permute(2, 3, 1, 0).reshape(batch, E, chunks * T)[:, :, :L], u, D, z, dtype_in)
    return (y, carry) if return_last_state else y
