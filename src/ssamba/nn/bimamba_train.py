"""Fused CPU training path of the bidirectional Mamba mixer: one autograd Function, numba backward.

Why: the differentiable eager mixer spent as much time flipping, concatenating, transposing
and copying (B, E, L) tensors (and running autograd over them) as scanning. Here the whole
mixer, ``in_proj`` to ``out_proj``, runs in the time-major (batch·L, channels) layout of
``ssamba.nn.bimamba_fused`` in both passes:

forward   xz = h @ in_w; u_d = SiLU(conv_d(x))  both directions, the backward one anti-causal in place
          xdbl_d = u_d @ x_w_d; delta_d = xdbl_d[:, :R] @ dt_w_d        (torch matmuls)
          y = (scan_fwd + scan_bwd + D·u terms) · SiLU(z) / 2           (``_biscan_kernel``)
          out = y @ out_w
backward  the same blocks of LANES channels in reverse; states are recomputed per segment
          from the every-SEGMENT-th states the forward kept, so memory stays O(L·E).

Saved for the backward: h (the mixer's input), ``xdbl``, the sum before the gate and the state
checkpoints; xz, u, delta and y are recomputed (two matmuls, one conv, elementwise work).
The adjoint recurrence is ``ssamba.nn.scan_fused.adjoint_segment`` (equations there).
``reverse=True`` exchanges the two directions' parameters, as in inference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import carray, njit, prange

from ssamba.nn._numba import (
    _LOG2E,
    _ONE,
    _ZERO,
    LANES,
    PREFETCH_ROWS,
    SEGMENT,
    _prefetch,
    _sigmoid32,
    _stack_float32,
    launch,
    worker_parts,
)
from ssamba.nn.bimamba_fused import (
    _biscan_kernel,
    _conv_silu_kernel,
    _direction_params,
    block_bounds,
    block_lanes,
    clip_rows,
    conv_pre_activation,
    load_steps,
    store_lanes,
)
from ssamba.nn.scan_fused import adjoint_segment, recompute_segment
from ssamba.nn.workspace import scratch

_F = np.float32
_HALF = _F(0.5)


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _biscan_backward_kernel(u, delta, xdbl, A, D, bias, xz, pre_gate, dout, ckpt, L, starts, lengths, R, bounds,
                            du, ddelta, dxz, dxdbl_part, dA_ch, dD_ch, dbias_ch):
    """Gradients of ``_biscan_kernel`` (train mode) for the same blocks of LANES channels
    (clip b: the ``lengths[b]`` rows from ``starts[b]``; L the longest; worker p takes blocks
    ``bounds[p] .. bounds[p+1] - 1``).

    z is read from xz's columns E.. as the forward reads it. Outputs: du, ddelta (2, rows, E)
    (ddelta through softplus, w.r.t. the raw delta); dz into dxz's columns E..; dxdbl_part
    (parts, 2, rows, 2N): dB, dC accumulated per worker part (B and C are shared by all channels
    of a clip; summed by the caller); dA_ch (2, batch, E, N), dD_ch and dbias_ch (2, batch, E):
    per clip, summed by the caller.
    Per block: the gate once (dLoss/dy, shared by the directions), then per direction one
    SEGMENT of steps at a time, latest first, in four phases on stack rows that stay in L1/L2:
    load the steps (``load_steps``), recompute their states from the forward's checkpoint,
    run the adjoint (``ssamba.nn.scan_fused``), write ddelta and du.
    """
    E = dout.shape[1]
    N = A.shape[2]
    for p in prange(bounds.shape[0] - 1):
        gs = np.empty((L, LANES), dtype=np.float32)       # dLoss/dy, the same for both directions
        # 512 = SEGMENT · LANES; 32768 = SEGMENT · MAX_STATE · LANES; 1024 = MAX_STATE · LANES
        dts = carray(_stack_float32(512), (SEGMENT, LANES))
        dtus = carray(_stack_float32(512), (SEGMENT, LANES))
        us = carray(_stack_float32(512), (SEGMENT, LANES))
        sig = carray(_stack_float32(512), (SEGMENT, LANES))
        g_steps = carray(_stack_float32(512), (SEGMENT, LANES))
        ga_sums = carray(_stack_float32(512), (SEGMENT, LANES))
        lb_sums = carray(_stack_float32(512), (SEGMENT, LANES))
        decays = carray(_stack_float32(32768), (SEGMENT, N, LANES))
        ahs = carray(_stack_float32(32768), (SEGMENT, N, LANES))
        rates = carray(_stack_float32(1024), (N, LANES))
        rates2 = carray(_stack_float32(1024), (N, LANES))
        h = carray(_stack_float32(1024), (N, LANES))
        carry = carray(_stack_float32(1024), (N, LANES))
        dA_acc = carray(_stack_float32(1024), (N, LANES))
        tile = carray(_stack_float32(1024), (N, LANES))
        ddelta_row = carray(_stack_float32(16), (LANES,))
        du_row = carray(_stack_float32(16), (LANES,))
        dbias_acc = carray(_stack_float32(16), (LANES,))
        dD_acc = carray(_stack_float32(16), (LANES,))
        d_lanes = carray(_stack_float32(16), (LANES,))
        dxdbl = dxdbl_part[p]
        for block in range(bounds[p], bounds[p + 1]):
            b, base, first = block_lanes(block, E)
            row0, valid = starts[b], lengths[b]
            # 1. through the gate: out = pre_gate · SiLU(z) / 2
            for t in range(valid):
                row = row0 + t
                ahead = row0 + min(t + PREFETCH_ROWS, valid - 1)
                _prefetch(xz, ahead, E + base)
                _prefetch(dout, ahead, base)
                _prefetch(pre_gate, ahead, base)
                for j in range(LANES):
                    zt = xz[row, E + base + j]
                    s = _sigmoid32(zt)
                    go = dout[row, base + j] * (_HALF if j >= first else _ZERO)
                    du_row[j] = go * pre_gate[row, base + j] * s * (_ONE + zt * (_ONE - s))
                    gs[t, j] = go * zt * s
                store_lanes(dxz[row, E + base:E + base + LANES], du_row, first)
            for d in range(2):
                Bv, Cv = xdbl[d, :, R:R + N], xdbl[d, :, R + N:]
                dBv, dCv = dxdbl[d, :, :N], dxdbl[d, :, N:]
                for j in range(LANES):
                    d_lanes[j] = D[d, base + j] * (_ONE if j >= first else _ZERO)
                    dbias_acc[j] = _ZERO
                    dD_acc[j] = _ZERO
                for n in range(N):
                    for j in range(LANES):
                        a_nj = A[d, base + j, n] * (_ONE if j >= first else _ZERO)
                        rates[n, j] = a_nj
                        rates2[n, j] = a_nj * _LOG2E      # decay = 2^(dt · A · log2 e)
                        carry[n, j] = _ZERO
                        dA_acc[n, j] = _ZERO
                # 2. one segment at a time, latest first (direction 1 runs backwards in time:
                # step k of a segment is time s0 + k, or valid - 1 - (s0 + k), B/C row row0 + that time)
                for seg in range((valid + SEGMENT - 1) // SEGMENT - 1, -1, -1):
                    s0 = seg * SEGMENT
                    count = min(SEGMENT, valid - s0)
                    first_row = row0 + (valid - 1 - s0 if d == 1 else s0)
                    row_step = -1 if d == 1 else 1
                    load_steps(u, delta, bias, d, row0, base, first, valid, s0, d == 1, dts[:count], dtus[:count],
                               us[:count], sig[:count])
                    for k in range(count):
                        t = first_row + k * row_step - row0
                        for j in range(LANES):
                            g_steps[k, j] = gs[t, j]
                    recompute_segment(ckpt[d, block, seg], rates2, dts[:count], dtus[:count], g_steps[:count],
                                      Bv, Cv, dCv, first_row, row_step, decays, ahs, h, tile)
                    adjoint_segment(rates, dts[:count], dtus[:count], g_steps[:count], Bv, Cv, dBv, first_row,
                                    row_step, decays, ahs, carry, dA_acc, ga_sums, lb_sums, tile)
                    # 3. d dt through softplus (its derivative is the sigmoid) and the bias; du; dD
                    for k in range(count):
                        row = first_row + k * row_step
                        for j in range(LANES):
                            lb_sum = lb_sums[k, j]
                            g = (ga_sums[k, j] + us[k, j] * lb_sum) * sig[k, j]   # 0 if inert
                            ddelta_row[j] = g
                            du_row[j] = g_steps[k, j] * d_lanes[j] + dts[k, j] * lb_sum
                            dbias_acc[j] += g
                            dD_acc[j] += g_steps[k, j] * us[k, j]
                        store_lanes(ddelta[d, row, base:base + LANES], ddelta_row, first)
                        store_lanes(du[d, row, base:base + LANES], du_row, first)
                for j in range(first, LANES):
                    dbias_ch[d, b, base + j] = dbias_acc[j]
                    dD_ch[d, b, base + j] = dD_acc[j]
                    for n in range(N):
                        dA_ch[d, b, base + j, n] = dA_acc[n, j]


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _conv_silu_backward_kernel(x, weight, bias, du, starts, lengths, parts, dx, dweight_part, dbias_part):
    """Gradients of ``_conv_silu_kernel`` given du (2, rows, E), which is overwritten (clips as there).

    Two passes over rows split among ``parts`` workers, as the forward (any batch, any length):
    1. per row, the pre-activation a is recomputed and du becomes g = du · SiLU'(a); the weight
       and bias gradients are accumulated per worker part into dweight_part (parts, 2, K, E)
       and dbias_part (parts, 2, E), summed by the caller;
    2. per row, dx = Σ_d Σ_k w[d, k] · g[d, the row that tap k of direction d reads it from],
       a gather, so no two workers write the same row. dx: (batch·L, >=E), first E columns.
    Each inner loop writes one array, so LLVM vectorises it over channels.
    """
    rows = du.shape[1]
    E = du.shape[2]
    K = weight.shape[1]
    items = 2 * rows
    per_part = (items + parts - 1) // parts
    for p in prange(parts):
        acc = np.empty(E, dtype=np.float32)
        dw = dweight_part[p]
        db = dbias_part[p]
        for d in range(2):
            for e in range(E):
                db[d, e] = _ZERO
            for k in range(K):
                for e in range(E):
                    dw[d, k, e] = _ZERO
        for item in range(p * per_part, min(items, (p + 1) * per_part)):
            d = item // rows
            row = item - d * rows
            b = np.searchsorted(starts, row, side="right") - 1
            t = row - starts[b]
            valid = lengths[b]
            conv_pre_activation(x, weight, bias, d, 0, row, t, valid, acc)
            for e in range(E):
                a = acc[e]
                s = _sigmoid32(a)
                acc[e] = du[d, row, e] * s * (_ONE + a * (_ONE - s))   # d SiLU(a) / da
            for e in range(E):
                du[d, row, e] = acc[e]
                db[d, e] += acc[e]
            for k in range(K):
                shift = k - (K - 1) if d == 0 else K - 1 - k
                if 0 <= t + shift < valid:
                    for e in range(E):
                        dw[d, k, e] += acc[e] * x[row + shift, e]
    per_part = (rows + parts - 1) // parts
    for p in prange(parts):
        acc = np.empty(E, dtype=np.float32)
        for row in range(p * per_part, min(rows, (p + 1) * per_part)):
            b = np.searchsorted(starts, row, side="right") - 1
            s = row - starts[b]   # x[s] was read by output row s - shift of tap k
            valid = lengths[b]
            for e in range(E):
                acc[e] = _ZERO
            for d in range(2):
                for k in range(K):
                    shift = k - (K - 1) if d == 0 else K - 1 - k
                    if 0 <= s - shift < valid:
                        for e in range(E):
                            acc[e] += weight[d, k, e] * du[d, row - shift, e]
            for e in range(E):
                dx[row, e] = acc[e]


def _np(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a float32 CPU tensor (autograd inputs still carry requires_grad)."""
    return t.detach().numpy()


def _conv(xz: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, starts: np.ndarray,
          valid: np.ndarray, u: torch.Tensor) -> torch.Tensor:
    """u (2, rows, E) = SiLU(conv) of both directions (written into ``u``), from the in_proj output (rows, 2E)."""
    launch(_conv_silu_kernel, _np(xz), _np(conv_w), _np(conv_b), _np(u), starts, valid,
           worker_parts(2 * xz.shape[0]))
    return u


class BiMambaCore(torch.autograd.Function):
    """(hidden (rows, D), parameters) -> the mixer's output (rows, D), in_proj and out_proj included.

    Parameters: in_w (2E, D) and out_w (D, E) (shared by the directions), and per direction,
    stacked [runs forward in time, runs backward in time]: conv_w (2, K, E), conv_b (2, E),
    x_w (2, E, R+2N), dt_w (2, R, E), dt_b (2, E), A (2, E, N), D (2, E). All float32,
    contiguous, CPU; clip b is the ``valid[b]`` rows from ``starts[b]`` (int64 (batch,), from
    ``bimamba_fused.clip_rows``), ``length`` the longest.
    Saved for the backward: hidden, xdbl, the sum before the gate and the state checkpoints
    (~(D + 2(R+2N) + E)·4 bytes per token); the in_proj output, u, delta and the gated y are
    recomputed (two matmuls, one conv and elementwise work), which keeps training memory near
    the Transformer's. Temporaries live in ``ssamba.nn.workspace`` buffers (no page faults).
    """

    @staticmethod
    def forward(ctx, hidden, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w, length, starts, valid):
        rows, E = hidden.shape[0], conv_w.shape[2]
        R, N = dt_w.shape[1], A.shape[2]
        blocks = len(valid) * ((E + LANES - 1) // LANES)
        xz = torch.matmul(hidden, in_w.t(), out=scratch("forward xz", rows, 2 * E))
        u = _conv(xz, conv_w, conv_b, starts, valid, scratch("forward u", 2, rows, E))
        xdbl = torch.bmm(u, x_w)                                  # (2, rows, R + 2N), saved
        delta = torch.bmm(xdbl[..., :R], dt_w, out=scratch("forward delta", 2, rows, E))
        y = scratch("forward y", rows, E)
        pre_gate = xz.new_empty(rows, E)
        ckpt = xz.new_empty(2, blocks, (length + SEGMENT - 1) // SEGMENT, N, LANES)
        launch(_biscan_kernel, _np(u), _np(delta), _np(xdbl), _np(A), _np(D), _np(dt_b),
                               _np(xz), _np(y), length, starts, valid, R, block_bounds(valid, E), _np(pre_gate),
                               _np(ckpt), True)
        ctx.save_for_backward(hidden, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w, xdbl, pre_gate, ckpt)
        ctx.length, ctx.starts, ctx.valid = length, starts, valid
        return y @ out_w.t()

    @staticmethod
    def backward(ctx, dout):
        hidden, in_w, conv_w, conv_b, x_w, dt_w, dt_b, A, D, out_w, xdbl, pre_gate, ckpt = ctx.saved_tensors
        length, starts, valid = ctx.length, ctx.starts, ctx.valid
        rows, E = hidden.shape[0], conv_w.shape[2]
        R, N = dt_w.shape[1], A.shape[2]
        batch = len(valid)
        bounds = block_bounds(valid, E)
        parts = bounds.shape[0] - 1
        dout = dout.float().contiguous()
        xz = torch.matmul(hidden, in_w.t(), out=scratch("backward xz", rows, 2 * E))
        z = xz[:, E:]
        d_out_w = dout.t() @ (pre_gate * F.silu(z) * 0.5)        # out_proj's input, recomputed
        dy = torch.matmul(dout, out_w, out=scratch("backward dy", rows, E))
        u = _conv(xz, conv_w, conv_b, starts, valid, scratch("backward u", 2, rows, E))
        delta = torch.bmm(xdbl[..., :R], dt_w, out=scratch("backward delta", 2, rows, E))
        du, ddelta = scratch("backward du", 2, rows, E), scratch("backward ddelta", 2, rows, E)
        dxz = scratch("backward dxz", rows, 2 * E)
        dxdbl_part = scratch("backward dxdbl", parts, 2, rows, 2 * N).zero_()
        dA_ch = xz.new_empty(2, batch, E, N)
        dD_ch, dbias_ch = xz.new_empty(2, batch, E), xz.new_empty(2, batch, E)
        launch(_biscan_backward_kernel, _np(u), _np(delta), _np(xdbl), _np(A), _np(D), _np(dt_b),
                                        _np(xz), _np(pre_gate), _np(dy), _np(ckpt), length, starts, valid, R,
                                        bounds, _np(du), _np(ddelta), _np(dxz), _np(dxdbl_part),
                                        _np(dA_ch), _np(dD_ch), _np(dbias_ch))
        dxdbl = torch.cat([torch.bmm(ddelta, dt_w.transpose(1, 2)), dxdbl_part.sum(0)], dim=-1)
        d_dt_w = torch.bmm(xdbl[..., :R].transpose(1, 2), ddelta)
        d_x_w = torch.bmm(u.transpose(1, 2), dxdbl)
        du.baddbmm_(dxdbl, x_w.transpose(1, 2))
        conv_parts = worker_parts(rows)
        d_conv_w = conv_w.new_empty(conv_parts, *conv_w.shape)
        d_conv_b = conv_b.new_empty(conv_parts, *conv_b.shape)
        launch(_conv_silu_backward_kernel, _np(xz), _np(conv_w), _np(conv_b), _np(du), starts, valid,
                                           conv_parts, _np(dxz), _np(d_conv_w), _np(d_conv_b))
        return (dxz @ in_w, dxz.t() @ hidden, d_conv_w.sum(0), d_conv_b.sum(0), d_x_w, d_dt_w,
                dbias_ch.sum(1), dA_ch.sum(1), dD_ch.sum(1), d_out_w, None, None, None)


def bimamba_train(mixer, hidden: torch.Tensor, reverse: bool = False,
                  lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The mixer's output (batch, L, D) for float32 CPU ``hidden``, differentiable (fused kernels).

    ``reverse=True`` gives ``flip(mixer(flip(hidden)))`` without flipping anything;
    ``lengths`` as in ``bimamba_fused.bimamba_inference`` (only valid tokens run).
    """
    batch, length, d_model = hidden.shape
    params = _direction_params(mixer, reverse)
    starts, valid, keep = clip_rows(lengths, batch, length)
    rows = hidden.reshape(batch * length, d_model)
    if keep is not None:
        keep = keep.to(hidden.device)
        rows = rows.index_select(0, keep)
    out = BiMambaCore.apply(rows.contiguous(), mixer.in_proj.weight,
                            params["conv_w"], params["conv_b"], params["x_w"], params["dt_w"], params["dt_b"],
                            params["A"], params["D"], mixer.out_proj.weight, int(valid.max(initial=0)),
                            starts, valid)
    if keep is not None:
        out = out.new_zeros(batch * length, d_model).index_copy(0, keep, out)
    return out.view(batch, length, d_model)
