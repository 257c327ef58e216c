"""Fused CPU selective scan: numba kernels for forward and backward, wrapped in autograd.

Why: an eager PyTorch scan streams (batch, E, L, N) intermediates through memory and is
memory-bound; here the recurrence runs with its state in small scratch arrays, so memory is
O(batch·E·L) and the work is compute-bound (dominated by the L·E·N exponentials).

* Layout: channels of one B/C group are taken LANES = 16 at a time, one channel per float32
  SIMD lane, with the (N, 16) state in scratch: B_t and C_t are then scalars broadcast to all
  lanes, and the forward needs no horizontal sums. Blocks are split into one contiguous range
  per worker thread (``prange`` over parts), so batch × channels run in parallel.
* The decay ``exp(delta·A)`` is computed as ``2^(delta·A·log2 e)`` with A pre-scaled, by a
  degree-5 polynomial (``_exp2_32``, relative error ~3e-7); other exponentials use ``_exp32``
  (both in ``ssamba.nn._numba``, shared by every kernel).
* ``exp`` is our own float32 polynomial built from plain arithmetic and a bit cast, because
  numba's ``math.exp`` is a scalar libm call that blocks vectorisation (pip's llvmlite has no
  SVML, so intel-cmplr-lib-rt would not help). Divisions use ``error_model="numpy"`` so that no
  zero-division branch blocks vectorisation.
* Backward recomputes the states: the forward kernel keeps every SEGMENT-th state (L/SEGMENT·N
  floats per channel), then the reverse pass recomputes one segment at a time into stack
  scratch and runs the reverse recurrence.
  B and C are shared by a group's channels, so their gradients are summed over lanes and
  accumulated in one buffer per worker part (no races), summed over parts afterwards.
* Kernels take float32 only (one signature each, cached on disk with ``cache=True``,
  compiled lazily on first call); callers cast and get their dtype back.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import carray, njit, prange

from ssamba.errors import ConfigError
from ssamba.nn._numba import (
    _LOG2E,
    _ONE,
    _SOFTPLUS_THRESHOLD,
    _ZERO,
    LANES,
    MAX_STATE,
    SEGMENT,
    _add_row_sums16,
    _exp2_32,
    _sigmoid32,
    _softplus32,
    _stack_float32,
    launch,
    worker_parts,
)


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def _load_block(u, delta, A, bias, softplus, ch0, e0, width, dts, us, dtus, decay_rates):
    """Gather one block of channels into lane-major scratch: dts/us/dtus (L, LANES) hold the step
    size, input and their product per lane, decay_rates (N, LANES) holds A. Unused lanes are zero,
    which makes them inert (no input, decay 1, zero gradient)."""
    L = dts.shape[0]
    N = decay_rates.shape[0]
    for j in range(LANES):
        if j < width:
            bias_e = bias[e0 + j]
            for t in range(L):
                dt = delta[ch0 + j, t] + bias_e
                if softplus:
                    dt = _softplus32(dt)
                ut = u[ch0 + j, t]
                dts[t, j] = dt
                us[t, j] = ut
                dtus[t, j] = dt * ut
            for n in range(N):
                decay_rates[n, j] = A[e0 + j, n]
        else:
            for t in range(L):
                dts[t, j] = _ZERO
                us[t, j] = _ZERO
                dtus[t, j] = _ZERO
            for n in range(N):
                decay_rates[n, j] = _ZERO


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def _block_geometry(block, E, G, blocks_per_group):
    """Block index -> (row of its B/C group, first channel, first channel within E, width)."""
    per_group = E // G
    group_row = block // blocks_per_group                  # = b * G + g
    first_in_group = (block - group_row * blocks_per_group) * LANES
    b = group_row // G
    e0 = (group_row - b * G) * per_group + first_in_group
    return group_row, b * E + e0, e0, min(LANES, per_group - first_in_group)


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def scan_step(h, rates2, dts, dtus, t, Bv, Cv, row, y):
    """One step of the recurrence for a block of LANES channels, the form every fused kernel runs:
    h_n = exp(dt_t·A_n)·h_n + dt_t·u_t·B_t[n] and y += Σ_n C_t[n]·h_n, lane-wise.
    rates2 = A·log2(e) (N, LANES), so the decay is the cheaper 2^(dt·rates2); B/C from row ``row``."""
    for n in range(rates2.shape[0]):
        b_tn = Bv[row, n]
        c_tn = Cv[row, n]
        for j in range(LANES):
            hn = _exp2_32(dts[t, j] * rates2[n, j]) * h[n, j] + dtus[t, j] * b_tn
            h[n, j] = hn
            y[j] += hn * c_tn


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def add_row_sums(tile, dest, row):
    """dest[row, n] += Σ_lanes tile[n] for n < N = dest.shape[1] (tile: (N, LANES)): the per-state
    sums over a block's channels of dB and dC. Sixteen states at a time through one shuffle tree
    when N is a multiple of 16 and dest's rows are contiguous, else one horizontal sum per state."""
    N = dest.shape[1]
    if N % 16 == 0 and dest.strides[1] == 4:
        for n0 in range(0, N, 16):
            _add_row_sums16(tile, n0, dest, row, n0)
    else:
        for n in range(N):
            total = _ZERO
            for j in range(LANES):
                total += tile[n, j]
            dest[row, n] += total


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def recompute_segment(state, rates2, dts, dtus, gs, Bv, Cv, dCv, row0, row_step, decays, ahs, h, tile):
    """Reverse pass, phase 1, over one segment of one block (shared by every fused backward): the
    segment's states again, from ``state`` (N, LANES), the state before its first step.

    Step k (k < count = dts.shape[0]; scratch rows dts, dtus, gs are in step order) reads B/C row
    ``row0 + k·row_step``. Keeps what the adjoint needs, decays[k] = a_k = 2^(dt_k·rates2) and
    ahs[k] = a_k·h_{k-1} (N, LANES each), and adds dC[row] += Σ_lanes g_k·h_k (h_k is at hand here;
    the lane products go through ``tile`` (N, LANES) to ``add_row_sums``).
    """
    N = rates2.shape[0]
    for n in range(N):
        for j in range(LANES):
            h[n, j] = state[n, j]
    for k in range(dts.shape[0]):
        row = row0 + k * row_step
        for n in range(N):
            b_kn = Bv[row, n]
            for j in range(LANES):
                a = _exp2_32(dts[k, j] * rates2[n, j])
                ah = a * h[n, j]
                hn = ah + dtus[k, j] * b_kn
                decays[k, n, j] = a
                ahs[k, n, j] = ah
                h[n, j] = hn
                tile[n, j] = gs[k, j] * hn
        add_row_sums(tile, dCv, row)


@njit(fastmath=True, cache=True, error_model="numpy", inline="always")
def adjoint_segment(rates, dts, dtus, gs, Bv, Cv, dBv, row0, row_step, decays, ahs, carry, dA_acc, ga_sums, lb_sums,
                    tile):
    """Reverse pass, phase 2: the adjoint recurrence over the segment of ``recompute_segment``, last step first.

    Per channel and state n, with a_t = exp(dt_t·A), h_t = a_t h_{t-1} + dt_t u_t B_t,
    y_t = Σ_n C_t h_t + D u_t and g_t = dLoss/dy_t (``gs``), the state gradient runs backwards,
        λ_t = g_t C_t + a_{t+1} λ_{t+1}     (``carry`` holds a_{t+1} λ_{t+1}; starts as dLoss/dh_L)
    and gives dA += λ_t a_t h_{t-1} dt_t, dB_t += Σ_lanes λ_t dt_t u_t, and
        d dt_t = Σ_n λ_t a_t h_{t-1} A + u_t Σ_n λ_t B_t,   du_t = D g_t + dt_t Σ_n λ_t B_t.
    Writes the two sums per step, ga_sums[k] = Σ_n λ a h_{t-1} A and lb_sums[k] = Σ_n λ B (LANES
    each: one accumulator row per step keeps them in registers over n; the caller forms d dt and du
    from them); accumulates dA_acc (N, LANES) and dB (rows, N) (through ``tile``, as dC above);
    leaves ``carry`` ready for the previous segment.
    """
    N = rates.shape[0]
    for k in range(dts.shape[0] - 1, -1, -1):
        row = row0 + k * row_step
        ga_sum = ga_sums[k]
        lb_sum = lb_sums[k]
        for j in range(LANES):
            ga_sum[j] = _ZERO
            lb_sum[j] = _ZERO
        for n in range(N):
            b_kn = Bv[row, n]
            c_kn = Cv[row, n]
            for j in range(LANES):
                lam = gs[k, j] * c_kn + carry[n, j]
                ga = lam * ahs[k, n, j]
                ga_sum[j] += ga * rates[n, j]
                dA_acc[n, j] += ga * dts[k, j]
                lb_sum[j] += lam * b_kn
                tile[n, j] = lam * dtus[k, j]
                carry[n, j] = decays[k, n, j] * lam
        add_row_sums(tile, dBv, row)


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _forward_kernel(u, delta, A, Bt, Ct, D, z, bias, out, last, ckpt, E, G, softplus, has_z, parts):
    """One fused forward pass over all channels.

    u, delta, z, out: (batch·E, L); A: (E, N); Bt, Ct: (batch·G·L, N), time-major; D, bias: (E,);
    last: (batch·E, N) receives the final state; ckpt: (batch·E, ceil(L / SEGMENT), N) receives
    the state before every SEGMENT-th step (the backward starts from these). Channels of one B/C group are processed in
    blocks of LANES, one channel per SIMD lane (B_t and C_t are then scalars broadcast to all
    lanes, and no horizontal sums are needed); the blocks are split into ``parts`` contiguous
    ranges, one per worker, each with its own scratch.
    """
    channels, L = u.shape
    N = A.shape[1]
    blocks_per_group = (E // G + LANES - 1) // LANES
    blocks = (channels // E) * G * blocks_per_group
    per_part = (blocks + parts - 1) // parts
    for p in prange(parts):
        dts = np.empty((L, LANES), dtype=np.float32)
        us = np.empty((L, LANES), dtype=np.float32)
        dtus = np.empty((L, LANES), dtype=np.float32)
        ys = np.empty((L, LANES), dtype=np.float32)
        rates = np.empty((N, LANES), dtype=np.float32)
        h = np.empty((N, LANES), dtype=np.float32)
        for block in range(p * per_part, min(blocks, (p + 1) * per_part)):
            group_row, ch0, e0, width = _block_geometry(block, E, G, blocks_per_group)
            _load_block(u, delta, A, bias, softplus, ch0, e0, width, dts, us, dtus, rates)
            row0 = group_row * L
            for n in range(N):
                for j in range(LANES):
                    rates[n, j] *= _LOG2E        # decay = 2^(dt · A · log2 e)
                    h[n, j] = _ZERO
            for t in range(L):
                if t % SEGMENT == 0:
                    k = t // SEGMENT
                    for j in range(width):
                        for n in range(N):
                            ckpt[ch0 + j, k, n] = h[n, j]
                for j in range(LANES):
                    ys[t, j] = _ZERO
                scan_step(h, rates, dts, dtus, t, Bt, Ct, row0 + t, ys[t])
            for j in range(width):
                ch = ch0 + j
                d_e = D[e0 + j]
                if has_z:
                    for t in range(L):
                        zt = z[ch, t]
                        out[ch, t] = (ys[t, j] + d_e * us[t, j]) * zt * _sigmoid32(zt)
                else:
                    for t in range(L):
                        out[ch, t] = ys[t, j] + d_e * us[t, j]
                for n in range(N):
                    last[ch, n] = h[n, j]


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _backward_kernel(u, delta, A, Bt, Ct, D, z, bias, ckpt, dout, dlast,
                     du, ddelta, dz, dA_ch, dD_ch, dbias_ch, dBt_part, dCt_part,
                     E, G, softplus, has_z, parts):
    """Gradients for the layout of ``_forward_kernel`` (same blocks of LANES channels).

    Per-channel outputs: du, ddelta, dz (batch·E, L); dA_ch (batch·E, N), dD_ch, dbias_ch (batch·E,),
    summed over batch by the caller. dBt_part, dCt_part (parts, batch·G·L, N): one accumulator
    per worker part (B and C are shared by a group's channels), summed over parts by the caller.
    States are recomputed: from the forward kernel's every-SEGMENT-th states (``ckpt``), the
    reverse pass recomputes one segment at a time into small buffers that stay in cache. A
    full forward pass (for y before the gate) runs only when there is a gate z.
    """
    channels, L = u.shape
    N = A.shape[1]
    blocks_per_group = (E // G + LANES - 1) // LANES
    blocks = (channels // E) * G * blocks_per_group
    per_part = (blocks + parts - 1) // parts
    segments = (L + SEGMENT - 1) // SEGMENT
    for p in prange(parts):
        dts = np.empty((L, LANES), dtype=np.float32)
        us = np.empty((L, LANES), dtype=np.float32)
        dtus = np.empty((L, LANES), dtype=np.float32)
        ys = np.empty((L, LANES), dtype=np.float32)      # y before the gate, then dLoss/dy
        ga_sums = np.empty((L, LANES), dtype=np.float32)   # Σ_n λ a h A per step (adjoint_segment)
        lb_sums = np.empty((L, LANES), dtype=np.float32)   # Σ_n λ B per step
        rates = carray(_stack_float32(1024), (N, LANES))             # 1024 = MAX_STATE * LANES
        rates2 = carray(_stack_float32(1024), (N, LANES))
        h = carray(_stack_float32(1024), (N, LANES))
        checkpoints = np.empty((segments + 1, N, LANES), dtype=np.float32)
        decays = carray(_stack_float32(32768), (SEGMENT, N, LANES))   # SEGMENT·MAX_STATE·LANES
        ahs = carray(_stack_float32(32768), (SEGMENT, N, LANES))
        carry = carray(_stack_float32(1024), (N, LANES))
        dA_acc = carray(_stack_float32(1024), (N, LANES))
        tile = carray(_stack_float32(1024), (N, LANES))
        d_blk = np.empty(LANES, dtype=np.float32)
        dB = dBt_part[p]
        dC = dCt_part[p]
        for block in range(p * per_part, min(blocks, (p + 1) * per_part)):
            group_row, ch0, e0, width = _block_geometry(block, E, G, blocks_per_group)
            _load_block(u, delta, A, bias, softplus, ch0, e0, width, dts, us, dtus, rates)
            row0 = group_row * L
            for j in range(LANES):
                d_blk[j] = D[e0 + j] if j < width else _ZERO
            for n in range(N):
                for j in range(LANES):
                    rates2[n, j] = rates[n, j] * _LOG2E    # decay = 2^(dt · A · log2 e)
            # 1. checkpoints saved by the forward kernel, and (only for the gate's dz) y before the gate
            for k in range(segments):
                for n in range(N):
                    for j in range(LANES):
                        checkpoints[k, n, j] = ckpt[ch0 + j, k, n] if j < width else _ZERO
            for n in range(N):
                for j in range(LANES):
                    h[n, j] = _ZERO
            for t in range(L if has_z else 0):
                for j in range(LANES):
                    ys[t, j] = d_blk[j] * us[t, j]
                scan_step(h, rates2, dts, dtus, t, Bt, Ct, row0 + t, ys[t])
            # 2. through the gate: ys becomes dLoss/dy; dz and dD per channel
            for j in range(LANES):
                if j < width:
                    ch = ch0 + j
                    dD_acc = _ZERO
                    for t in range(L):
                        go = dout[ch, t]
                        if has_z:
                            zt = z[ch, t]
                            s = _sigmoid32(zt)
                            dz[ch, t] = go * ys[t, j] * s * (_ONE + zt * (_ONE - s))
                            go = go * zt * s
                        ys[t, j] = go
                        dD_acc += go * us[t, j]
                    dD_ch[ch] = dD_acc
                    for n in range(N):
                        carry[n, j] = dlast[ch, n]
                else:
                    for t in range(L):
                        ys[t, j] = _ZERO
                    for n in range(N):
                        carry[n, j] = _ZERO
            for n in range(N):
                for j in range(LANES):
                    dA_acc[n, j] = _ZERO
            # 3. reverse recurrence, one segment at a time (latest first); carry = dLoss/dh_t.
            # (the scatter below forms d dt and du from adjoint_segment's two per-step sums)
            for seg in range(segments - 1, -1, -1):
                s0 = seg * SEGMENT
                s1 = min(L, s0 + SEGMENT)
                recompute_segment(checkpoints[seg], rates2, dts[s0:s1], dtus[s0:s1], ys[s0:s1], Bt, Ct, dC,
                                  row0 + s0, 1, decays, ahs, h, tile)
                adjoint_segment(rates, dts[s0:s1], dtus[s0:s1], ys[s0:s1], Bt, Ct, dB, row0 + s0, 1, decays, ahs,
                                carry, dA_acc, ga_sums[s0:s1], lb_sums[s0:s1], tile)
            # 4. scatter per channel, through softplus and the bias
            for j in range(width):
                ch = ch0 + j
                bias_e = bias[e0 + j]
                dbias_acc = _ZERO
                d_e = d_blk[j]
                for t in range(L):
                    lb_sum = lb_sums[t, j]
                    g = ga_sums[t, j] + us[t, j] * lb_sum
                    if softplus:
                        raw = delta[ch, t] + bias_e
                        g = g * (_ONE if raw > _SOFTPLUS_THRESHOLD else _sigmoid32(raw))
                    ddelta[ch, t] = g
                    du[ch, t] = ys[t, j] * d_e + dts[t, j] * lb_sum
                    dbias_acc += g
                dbias_ch[ch] = dbias_acc
                for n in range(N):
                    dA_ch[ch, n] = dA_acc[n, j]


def _np(t: torch.Tensor, *shape: int) -> np.ndarray:
    """Zero-copy numpy view (reshaped) of a contiguous float32 CPU tensor."""
    return t.detach().view(*shape).numpy()


_EMPTY_2D = np.zeros((1, 1), dtype=np.float32)


class _FusedScanFunction(torch.autograd.Function):
    """Autograd wrapper; inputs are float32, contiguous, CPU; Bt/Ct are (batch, G, L, N)."""

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, z, delta_bias, softplus):
        batch, E, L = u.shape
        N = A.shape[1]
        G = Bt.shape[1]
        rows, channels = batch * G * L, batch * E
        out = torch.empty_like(u)
        last = u.new_empty(batch, E, N)
        ckpt = u.new_empty(batch * E, (L + SEGMENT - 1) // SEGMENT, N)
        launch(_forward_kernel, _np(u, channels, L), _np(delta, channels, L), A.detach().numpy(),
                                _np(Bt, rows, N), _np(Ct, rows, N), D.detach().numpy(),
                                _np(z, channels, L) if z is not None else _EMPTY_2D,
                                delta_bias.detach().numpy(), _np(out, channels, L), _np(last, channels, N),
                                ckpt.numpy(), E, G, bool(softplus), z is not None, worker_parts(channels))
        ctx.save_for_backward(u, delta, A, Bt, Ct, D, z, delta_bias, ckpt)
        ctx.softplus = bool(softplus)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, Bt, Ct, D, z, delta_bias, ckpt = ctx.saved_tensors
        batch, E, L = u.shape
        N = A.shape[1]
        G = Bt.shape[1]
        rows, channels = batch * G * L, batch * E
        parts = worker_parts(channels)
        dout = dout.float().contiguous() if dout is not None else torch.zeros_like(u)
        dlast = dlast.float().contiguous() if dlast is not None else u.new_zeros(batch, E, N)
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(u) if z is not None else None
        dA_ch = u.new_empty(batch, E, N)
        dD_ch, dbias_ch = u.new_empty(batch, E), u.new_empty(batch, E)
        dBt_part = u.new_zeros(parts, rows, N)
        dCt_part = u.new_zeros(parts, rows, N)
        launch(_backward_kernel, _np(u, channels, L), _np(delta, channels, L), A.detach().numpy(),
                                 _np(Bt, rows, N), _np(Ct, rows, N), D.detach().numpy(),
                                 _np(z, channels, L) if z is not None else _EMPTY_2D,
                                 delta_bias.detach().numpy(), ckpt.numpy(), _np(dout, channels, L),
                                 _np(dlast, channels, N),
                                 _np(du, channels, L), _np(ddelta, channels, L),
                                 _np(dz, channels, L) if dz is not None else _EMPTY_2D,
                                 _np(dA_ch, channels, N), _np(dD_ch, channels), _np(dbias_ch, channels),
                                 dBt_part.numpy(), dCt_part.numpy(), E, G, ctx.softplus, z is not None, parts)
        dBt = (dBt_part.sum(0) if parts > 1 else dBt_part[0]).view(Bt.shape)
        dCt = (dCt_part.sum(0) if parts > 1 else dCt_part[0]).view(Ct.shape)
        return du, ddelta, dA_ch.sum(0), dBt, dCt, dD_ch.sum(0), dz, dbias_ch.sum(0), None


def selective_scan_fused(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                         delta_softplus=False, return_last_state=False):
    """Selective scan on CPU with the fused numba kernels (same contract as ``selective_scan_ref``).

    Computes in float32 whatever the input dtype and returns the input dtype (the last state is
    float32, as in mamba_ssm).
    """
    dtype_in = u.dtype
    E, N = u.shape[1], A.shape[1]
    if N > MAX_STATE:
        raise ConfigError(f"selective_scan: the fused backend supports a state size N <= {MAX_STATE}, "
                          f"got A with N={N}; use backend='chunked'")
    f32 = torch.float32
    u_, delta_, A_ = (t.to(f32).contiguous() for t in (u, delta, A))
    # (batch, N, L) or (batch, G, N, L) -> time-major (batch, G, L, N) so the N loop is contiguous
    Bt = (B.unsqueeze(1) if B.dim() == 3 else B).to(f32).transpose(-1, -2).contiguous()
    Ct = (C.unsqueeze(1) if C.dim() == 3 else C).to(f32).transpose(-1, -2).contiguous()
    D_ = D.to(f32).contiguous() if D is not None else u_.new_zeros(E)
    z_ = z.to(f32).contiguous() if z is not None else None
    bias_ = delta_bias.to(f32).contiguous() if delta_bias is not None else u_.new_zeros(E)
    out, last = _FusedScanFunction.apply(u_, delta_, A_, Bt, Ct, D_, z_, bias_, bool(delta_softplus))
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out
