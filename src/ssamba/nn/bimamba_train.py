"""Fused CPU training path of the bidirectional Mamba mixer core: one autograd Function, numba backward.

Why: the differentiable eager mixer spent as much time flipping, concatenating, transposing
and copying (B, E, L) tensors (and running autograd over them) as scanning. Here the core
between ``in_proj`` and ``out_proj`` runs in the time-major (batch·L, channels) layout of
``ssamba.nn.bimamba_fused`` in both passes:

forward   u_d = SiLU(conv_d(x))            both directions, the backward one anti-causal in place
          xdbl_d = u_d @ x_w_d; delta_d = xdbl_d[:, :R] @ dt_w_d        (torch matmuls)
          y = (scan_fwd + scan_bwd + D·u terms) · SiLU(z) / 2           (``_biscan_kernel``)
backward  the same blocks of LANES channels in reverse; states are recomputed per segment
          from the every-SEGMENT-th states the forward kept, so memory stays O(L·E).

Saved for the backward: ``xz`` (the in_proj output), ``xdbl``, the sum before the gate and
the state checkpoints; ``u`` and ``delta`` are recomputed (one conv and one small matmul).

The adjoint recurrence (per channel, state n; a_t = exp(dt_t·A), h_t = a_t h_{t-1} + dt_t u_t B_t,
y_t = Σ_n C_t h_t + D u_t): with g_t = dL/dy_t, the state gradient runs backwards in time,
    λ_t = g_t C_t + a_{t+1} λ_{t+1},
and gives dL/dA += λ_t a_t h_{t-1} dt_t,  dL/d dt_t = Σ_n λ_t (a_t h_{t-1} A + u_t B_t),
dL/du_t = D g_t + Σ_n λ_t dt_t B_t,  dL/dB_t = Σ_channels λ_t dt_t u_t,  dL/dC_t = Σ_channels g_t h_t.
``reverse=True`` exchanges the two directions' parameters, as in inference.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import carray, njit, prange

from ssamba.nn._numba import (
    _LAUNCH_LOCK,
    _LOG2E,
    _ONE,
    _SOFTPLUS_THRESHOLD,
    _ZERO,
    LANES,
    SEGMENT,
    _exp2_32,
    _sigmoid32,
    _stack_float32,
)
from ssamba.nn.bimamba_fused import _biscan_kernel, _conv_silu_kernel, load_direction

_F = np.float32
_HALF = _F(0.5)


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _biscan_backward_kernel(u, delta, xdbl, A, D, bias, z, pre_gate, dout, ckpt, L, R, parts,
                            du, ddelta, dz, dxdbl_part, dA_ch, dD_ch, dbias_ch):
    """Gradients of ``_biscan_kernel`` (train mode) for the same blocks of LANES channels.

    Outputs: du, ddelta (2, batch·L, E) (ddelta through softplus, w.r.t. the raw delta);
    dz (batch·L, E); dxdbl_part (parts, 2, batch·L, 2N): dB, dC accumulated per worker part
    (B and C are shared by all channels of a clip; summed by the caller); dA_ch (2, batch, E, N),
    dD_ch and dbias_ch (2, batch, E): per clip, summed by the caller.
    """
    rows, E = dout.shape
    N = A.shape[2]
    batch = rows // L
    blocks_per_clip = (E + LANES - 1) // LANES
    blocks = batch * blocks_per_clip
    per_part = (blocks + parts - 1) // parts
    segments = (L + SEGMENT - 1) // SEGMENT
    for p in prange(parts):
        dts = np.empty((L, LANES), dtype=np.float32)
        us = np.empty((L, LANES), dtype=np.float32)
        dtus = np.empty((L, LANES), dtype=np.float32)
        gs = np.empty((L, LANES), dtype=np.float32)       # dLoss/dy, the same for both directions
        ddts = np.empty((L, LANES), dtype=np.float32)
        dus = np.empty((L, LANES), dtype=np.float32)
        rates = carray(_stack_float32(1024), (N, LANES))  # 1024 = MAX_STATE · LANES
        rates2 = carray(_stack_float32(1024), (N, LANES))
        seg_states = carray(_stack_float32(33792), (SEGMENT + 1, N, LANES))  # (SEGMENT+1)·MAX_STATE·LANES
        seg_decays = carray(_stack_float32(32768), (SEGMENT, N, LANES))
        carry = carray(_stack_float32(1024), (N, LANES))
        dA_acc = carray(_stack_float32(1024), (N, LANES))
        ddt_row = carray(_stack_float32(16), (LANES,))
        du_row = carray(_stack_float32(16), (LANES,))
        dxdbl = dxdbl_part[p]
        for block in range(p * per_part, min(blocks, (p + 1) * per_part)):
            b = block // blocks_per_clip
            e0 = (block - b * blocks_per_clip) * LANES
            width = min(LANES, E - e0)
            row0 = b * L
            # 1. through the gate: out = pre_gate · SiLU(z) / 2
            for t in range(L):
                row = row0 + t
                for j in range(LANES):
                    if j < width:
                        zt = z[row, e0 + j]
                        s = _sigmoid32(zt)
                        go = dout[row, e0 + j] * _HALF
                        dz[row, e0 + j] = go * pre_gate[row, e0 + j] * s * (_ONE + zt * (_ONE - s))
                        gs[t, j] = go * zt * s
                    else:
                        gs[t, j] = _ZERO
            for d in range(2):
                load_direction(u, delta, A, D, bias, d, row0, e0, width, dts, us, dtus, None, rates)
                for n in range(N):
                    for j in range(LANES):
                        rates2[n, j] = rates[n, j] * _LOG2E
                        carry[n, j] = _ZERO
                        dA_acc[n, j] = _ZERO
                # 2. the adjoint recurrence, one segment at a time (latest first)
                for seg in range(segments - 1, -1, -1):
                    s0 = seg * SEGMENT
                    s1 = min(L, s0 + SEGMENT)
                    for n in range(N):
                        for j in range(LANES):
                            seg_states[0, n, j] = ckpt[d, block, seg, n, j]
                    for step in range(s0, s1):
                        t = step if d == 0 else L - 1 - step
                        k = step - s0
                        for n in range(N):
                            b_tn = xdbl[d, row0 + t, R + n]
                            for j in range(LANES):
                                a = _exp2_32(dts[t, j] * rates2[n, j])
                                seg_decays[k, n, j] = a
                                seg_states[k + 1, n, j] = a * seg_states[k, n, j] + dtus[t, j] * b_tn
                    for step in range(s1 - 1, s0 - 1, -1):
                        t = step if d == 0 else L - 1 - step
                        k = step - s0
                        row = row0 + t
                        for j in range(LANES):
                            ddt_row[j] = _ZERO
                            du_row[j] = gs[t, j] * (D[d, e0 + j] if j < width else _ZERO)
                        for n in range(N):
                            b_tn = xdbl[d, row, R + n]
                            c_tn = xdbl[d, row, R + N + n]
                            sum_b = _ZERO
                            sum_c = _ZERO
                            for j in range(LANES):
                                dy = gs[t, j]
                                gn = dy * c_tn + carry[n, j]
                                a = seg_decays[k, n, j]
                                sum_c += dy * seg_states[k + 1, n, j]
                                ga = gn * a * seg_states[k, n, j]
                                dA_acc[n, j] += ga * dts[t, j]
                                gb = gn * b_tn
                                ddt_row[j] += ga * rates[n, j] + us[t, j] * gb
                                du_row[j] += dts[t, j] * gb
                                sum_b += gn * dtus[t, j]
                                carry[n, j] = a * gn
                            dxdbl[d, row, n] += sum_b
                            dxdbl[d, row, N + n] += sum_c
                        for j in range(LANES):
                            ddts[t, j] = ddt_row[j]
                            dus[t, j] = du_row[j]
                # 3. scatter per channel, through softplus and the bias
                for j in range(width):
                    e = e0 + j
                    dbias_acc = _ZERO
                    dD_acc = _ZERO
                    for t in range(L):
                        row = row0 + t
                        raw = delta[d, row, e] + bias[d, e]
                        g = ddts[t, j] * (_ONE if raw > _SOFTPLUS_THRESHOLD else _sigmoid32(raw))
                        ddelta[d, row, e] = g
                        du[d, row, e] = dus[t, j]
                        dbias_acc += g
                        dD_acc += gs[t, j] * us[t, j]
                    dbias_ch[d, b, e] = dbias_acc
                    dD_ch[d, b, e] = dD_acc
                    for n in range(N):
                        dA_ch[d, b, e, n] = dA_acc[n, j]


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _conv_silu_backward_kernel(x, weight, bias, du, L, parts, dx, dweight, dbias):
    """Gradients of ``_conv_silu_kernel`` given du (2, batch·L, E).

    dx: (batch·L, >=E) rows, only the first E columns written (accumulated from zero);
    dweight (2, K, E), dbias (2, E). Parts own disjoint channel ranges (no races, any batch).
    """
    rows = du.shape[1]
    E = du.shape[2]
    K = weight.shape[1]
    per_part = (E + parts - 1) // parts
    for p in prange(parts):
        lo = p * per_part
        hi = min(E, lo + per_part)
        if lo >= hi:
            continue
        acc = np.empty(hi - lo, dtype=np.float32)
        for row in range(rows):
            for e in range(lo, hi):
                dx[row, e] = _ZERO
        for d in range(2):
            for e in range(lo, hi):
                dbias[d, e] = _ZERO
                for k in range(K):
                    dweight[d, k, e] = _ZERO
            for row in range(rows):
                t = row % L
                for e in range(lo, hi):
                    acc[e - lo] = bias[d, e]
                for k in range(K):
                    shift = k - (K - 1) if d == 0 else K - 1 - k
                    if 0 <= t + shift < L:
                        src = row + shift
                        for e in range(lo, hi):
                            acc[e - lo] += weight[d, k, e] * x[src, e]
                for e in range(lo, hi):
                    a = acc[e - lo]
                    s = _sigmoid32(a)
                    g = du[d, row, e] * s * (_ONE + a * (_ONE - s))   # d SiLU(a) / da
                    acc[e - lo] = g
                    dbias[d, e] += g
                for k in range(K):
                    shift = k - (K - 1) if d == 0 else K - 1 - k
                    if 0 <= t + shift < L:
                        src = row + shift
                        for e in range(lo, hi):
                            g = acc[e - lo]
                            dx[src, e] += weight[d, k, e] * g
                            dweight[d, k, e] += g * x[src, e]


def _np(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view of a float32 CPU tensor (autograd inputs still carry requires_grad)."""
    return t.detach().numpy()


def _parts(work_items: int) -> int:
    return max(1, min(numba.get_num_threads(), work_items))


def _conv(xz: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, length: int) -> torch.Tensor:
    """u (2, rows, E) = SiLU(conv) of both directions, from the in_proj output (rows, 2E)."""
    rows, E = xz.shape[0], conv_w.shape[2]
    u = xz.new_empty(2, rows, E)
    with _LAUNCH_LOCK:
        _conv_silu_kernel(_np(xz), _np(conv_w), _np(conv_b), _np(u), length, _parts(2 * rows))
    return u


class BiMambaCore(torch.autograd.Function):
    """(xz (rows, 2E), stacked per-direction parameters) -> y (rows, E), the input of out_proj.

    Parameters are stacked [runs forward in time, runs backward in time]: conv_w (2, K, E),
    conv_b (2, E), x_w (2, E, R+2N), dt_w (2, R, E), dt_b (2, E), A (2, E, N), D (2, E).
    All float32, contiguous, CPU; ``length`` is L (rows = batch·L).
    """

    @staticmethod
    def forward(ctx, xz, conv_w, conv_b, x_w, dt_w, dt_b, A, D, length):
        rows, E = xz.shape[0], conv_w.shape[2]
        R, N = dt_w.shape[1], A.shape[2]
        blocks = (rows // length) * ((E + LANES - 1) // LANES)
        u = _conv(xz, conv_w, conv_b, length)
        xdbl = torch.bmm(u, x_w)                                  # (2, rows, R + 2N)
        delta = torch.bmm(xdbl[..., :R], dt_w)                    # (2, rows, E)
        y = xz.new_empty(rows, E)
        pre_gate = xz.new_empty(rows, E)
        ckpt = xz.new_empty(2, blocks, (length + SEGMENT - 1) // SEGMENT, N, LANES)
        with _LAUNCH_LOCK:
            _biscan_kernel(_np(u), _np(delta), _np(xdbl), _np(A), _np(D), _np(dt_b),
                           _np(xz)[:, E:], _np(y), length, R, _parts(blocks), _np(pre_gate),
                           _np(ckpt), True)
        ctx.save_for_backward(xz, conv_w, conv_b, x_w, dt_w, dt_b, A, D, xdbl, pre_gate, ckpt)
        ctx.length = length
        return y

    @staticmethod
    def backward(ctx, dout):
        xz, conv_w, conv_b, x_w, dt_w, dt_b, A, D, xdbl, pre_gate, ckpt = ctx.saved_tensors
        length = ctx.length
        rows, E = xz.shape[0], conv_w.shape[2]
        R, N = dt_w.shape[1], A.shape[2]
        batch = rows // length
        parts = _parts(ckpt.shape[1])
        dout = dout.float().contiguous()
        u = _conv(xz, conv_w, conv_b, length)
        delta = torch.bmm(xdbl[..., :R], dt_w)
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dxz = xz.new_empty(rows, 2 * E)
        dxdbl_part = xz.new_zeros(parts, 2, rows, 2 * N)
        dA_ch = xz.new_empty(2, batch, E, N)
        dD_ch, dbias_ch = xz.new_empty(2, batch, E), xz.new_empty(2, batch, E)
        with _LAUNCH_LOCK:
            _biscan_backward_kernel(_np(u), _np(delta), _np(xdbl), _np(A), _np(D), _np(dt_b),
                                    _np(xz)[:, E:], _np(pre_gate), _np(dout), _np(ckpt), length, R,
                                    parts, _np(du), _np(ddelta), _np(dxz)[:, E:], _np(dxdbl_part),
                                    _np(dA_ch), _np(dD_ch), _np(dbias_ch))
        dxdbl = torch.cat([torch.bmm(ddelta, dt_w.transpose(1, 2)), dxdbl_part.sum(0)], dim=-1)
        d_dt_w = torch.bmm(xdbl[..., :R].transpose(1, 2), ddelta)
        d_x_w = torch.bmm(u.transpose(1, 2), dxdbl)
        du.baddbmm_(dxdbl, x_w.transpose(1, 2))
        d_conv_w, d_conv_b = torch.empty_like(conv_w), torch.empty_like(conv_b)
        with _LAUNCH_LOCK:
            _conv_silu_backward_kernel(_np(xz), _np(conv_w), _np(conv_b), _np(du), length,
                                       _parts(E), _np(dxz), _np(d_conv_w), _np(d_conv_b))
        return dxz, d_conv_w, d_conv_b, d_x_w, d_dt_w, dbias_ch.sum(1), dA_ch.sum(1), dD_ch.sum(1), None


def bimamba_train(mixer, hidden: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """The mixer's output (batch, L, D) for float32 CPU ``hidden``, differentiable (fused kernels).

    ``reverse=True`` gives ``flip(mixer(flip(hidden)))`` without flipping anything.
    """
    from ssamba.nn.bimamba_fused import _direction_params

    batch, length, _ = hidden.shape
    rows = batch * length
    params = _direction_params(mixer, reverse)
    xz = torch.matmul(hidden.reshape(rows, -1), mixer.in_proj.weight.t())          # (rows, 2E)
    y = BiMambaCore.apply(xz.contiguous(), params["conv_w"], params["conv_b"], params["x_w"], params["dt_w"],
                          params["dt_b"], params["A"], params["D"], length)
    return torch.matmul(y, mixer.out_proj.weight.t()).view(batch, length, -1)
