"""Fused CPU selective scan: numba kernels for forward and backward, wrapped in autograd.

Why: an eager PyTorch scan streams (batch, E, L, N) intermediates through memory and is
memory-bound; here each (batch, channel) pair runs the whole recurrence with its N-dim state
in a small local array, so memory is O(batch·E·L) and the work is compute-bound.

* Parallel over batch × channels (``prange``); the state loop over N is innermost so LLVM
  vectorises it (``fastmath``). ``exp`` is our own float32 polynomial built from plain
  arithmetic and a bit cast, because numba's ``math.exp`` is a scalar libm call that blocks
  vectorisation (pip's llvmlite has no SVML).
* Backward recomputes the states: per channel it reruns the forward recurrence into a
  per-thread (L + 1, N) scratch buffer (states and decays), then runs the reverse recurrence.
  B and C are shared by the channels of a group, so their gradients are accumulated in one
  buffer per worker part (no races) and summed afterwards.
* Kernels take float32 only (one signature each, cached on disk with ``cache=True``,
  compiled lazily on first call); callers cast.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)          # ln 2 split in two (Cody-Waite) so x - k·ln2 is exact
_LN2_LO = _F(-2.12194440e-4)
_EXP_MAX = _F(88.3762626647949)
_EXP_MIN = _F(-87.3365478515625)   # below this exp underflows to a denormal: clamp (≈1.2e-38)
# Minimax coefficients of (e^r - 1 - r) / r² on |r| <= ln2 / 2 (classic float32 expf set).
_P0 = _F(1.9875691500e-4)
_P1 = _F(1.3981999507e-3)
_P2 = _F(8.3334519073e-3)
_P3 = _F(4.1665795894e-2)
_P4 = _F(1.6666665459e-1)
_P5 = _F(5.0000001201e-1)
_ONE = _F(1.0)
_HALF = _F(0.5)
_ZERO = _F(0.0)
_SOFTPLUS_THRESHOLD = _F(20.0)     # same threshold as torch.nn.functional.softplus


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (an LLVM bitcast, vectorisable)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if value.type.width != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(fastmath=True, cache=True, error_model="numpy")
def _exp32(x):
    """float32 exp, ~1 ulp on the clamped range, written so that loops over it vectorise."""
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI - k * _LN2_LO
    r2 = r * r
    p = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r2 + r + _ONE
    scale = _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
    return p * scale


@njit(fastmath=True, cache=True, error_model="numpy")
def _log1p_unit32(v):
    """float32 log(1 + v) for v in [0, 1]: 2·atanh(s), s = v / (2 + v) <= 1/3 (series to s^15)."""
    s = v / (_F(2.0) + v)
    s2 = s * s
    poly = _F(1.0 / 15.0)
    poly = poly * s2 + _F(1.0 / 13.0)
    poly = poly * s2 + _F(1.0 / 11.0)
    poly = poly * s2 + _F(1.0 / 9.0)
    poly = poly * s2 + _F(1.0 / 7.0)
    poly = poly * s2 + _F(1.0 / 5.0)
    poly = poly * s2 + _F(1.0 / 3.0)
    poly = poly * s2 + _ONE
    return _F(2.0) * s * poly


@njit(fastmath=True, cache=True, error_model="numpy")
def _softplus32(x):
    """log(1 + e^x) without overflow; identity above the threshold, as torch's softplus."""
    smooth = max(x, _ZERO) + _log1p_unit32(_exp32(-abs(x)))
    return x if x > _SOFTPLUS_THRESHOLD else smooth


@njit(fastmath=True, cache=True, error_model="numpy")
def _sigmoid32(x):
    return _ONE / (_ONE + _exp32(-x))


@njit(fastmath=True, cache=True, error_model="numpy")
def _step_sizes(delta_row, bias_e, softplus, steps):
    """steps[t] = delta_t + bias (softplus'd when asked) for one channel; vectorised over t."""
    if softplus:
        for t in range(steps.shape[0]):
            steps[t] = _softplus32(delta_row[t] + bias_e)
    else:
        for t in range(steps.shape[0]):
            steps[t] = delta_row[t] + bias_e


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _forward_kernel(u, delta, A, Bt, Ct, D, z, bias, out, last, E, G, softplus, has_z, parts):
    """One fused forward pass over all channels.

    u, delta, z, out: (batch·E, L); A: (E, N); Bt, Ct: (batch·G·L, N), time-major; D, bias: (E,);
    last: (batch·E, N) receives the final state. Channels are split into ``parts`` contiguous
    ranges, one per worker, each with its own scratch. (2-D arrays so that the inner loops index
    with plain loop counters, which LLVM can vectorise.)
    """
    channels, L = u.shape
    N = A.shape[1]
    per_group = E // G
    per_part = (channels + parts - 1) // parts
    for p in prange(parts):
        steps = np.empty(L, dtype=np.float32)
        h = np.empty(N, dtype=np.float32)
        for ch in range(p * per_part, min(channels, (p + 1) * per_part)):
            b = ch // E
            e = ch - b * E
            row0 = (b * G + e // per_group) * L
            a_row = A[e]
            u_row = u[ch]
            out_row = out[ch]
            _step_sizes(delta[ch], bias[e], softplus, steps)
            for n in range(N):
                h[n] = _ZERO
            for t in range(L):
                dt = steps[t]
                dtu = dt * u_row[t]
                b_t = Bt[row0 + t]
                c_t = Ct[row0 + t]
                acc = _ZERO
                for n in range(N):
                    hn = _exp32(dt * a_row[n]) * h[n] + dtu * b_t[n]
                    h[n] = hn
                    acc += hn * c_t[n]
                out_row[t] = acc
            d_e = D[e]
            if has_z:
                z_row = z[ch]
                for t in range(L):
                    zt = z_row[t]
                    out_row[t] = (out_row[t] + d_e * u_row[t]) * zt * _sigmoid32(zt)
            else:
                for t in range(L):
                    out_row[t] = out_row[t] + d_e * u_row[t]
            for n in range(N):
                last[ch, n] = h[n]


@njit(parallel=True, fastmath=True, cache=True, error_model="numpy")
def _backward_kernel(u, delta, A, Bt, Ct, D, z, bias, dout, dlast,
                     du, ddelta, dz, dA_ch, dD_ch, dbias_ch, dBt_part, dCt_part,
                     E, G, softplus, has_z, parts):
    """Gradients for the layout of ``_forward_kernel``.

    Per-channel outputs: du, ddelta, dz (batch·E, L); dA_ch (batch·E, N), dD_ch, dbias_ch (batch·E,),
    summed over batch by the caller. dBt_part, dCt_part (parts, batch·G·L, N): one accumulator
    per worker part (B and C are shared by a group's channels), summed over parts by the caller.
    """
    channels, L = u.shape
    N = A.shape[1]
    per_group = E // G
    per_part = (channels + parts - 1) // parts
    for p in prange(parts):
        states = np.empty((L + 1, N), dtype=np.float32)   # states[t + 1] = h_t; states[0] = h_{-1} = 0
        decays = np.empty((L, N), dtype=np.float32)
        steps = np.empty(L, dtype=np.float32)
        pre_gate = np.empty(L, dtype=np.float32)          # y before the silu(z) gate
        dys = np.empty(L, dtype=np.float32)               # dLoss/dy before the gate
        carry = np.empty(N, dtype=np.float32)
        dA_acc = np.empty(N, dtype=np.float32)
        dB = dBt_part[p]
        dC = dCt_part[p]
        for ch in range(p * per_part, min(channels, (p + 1) * per_part)):
            b = ch // E
            e = ch - b * E
            row0 = (b * G + e // per_group) * L
            a_row = A[e]
            u_row = u[ch]
            d_e = D[e]
            # 1. recompute the forward recurrence, keeping states and decays
            _step_sizes(delta[ch], bias[e], softplus, steps)
            for n in range(N):
                states[0, n] = _ZERO
            for t in range(L):
                dt = steps[t]
                ut = u_row[t]
                dtu = dt * ut
                b_t = Bt[row0 + t]
                c_t = Ct[row0 + t]
                h_prev = states[t]
                h_t = states[t + 1]
                a_t = decays[t]
                acc = _ZERO
                for n in range(N):
                    a = _exp32(dt * a_row[n])
                    hn = a * h_prev[n] + dtu * b_t[n]
                    a_t[n] = a
                    h_t[n] = hn
                    acc += hn * c_t[n]
                pre_gate[t] = acc + d_e * ut
            # 2. through the gate: dy and dz
            dD_acc = _ZERO
            dout_row = dout[ch]
            if has_z:
                z_row = z[ch]
                dz_row = dz[ch]
                for t in range(L):
                    zt = z_row[t]
                    s = _sigmoid32(zt)
                    go = dout_row[t]
                    dz_row[t] = go * pre_gate[t] * s * (_ONE + zt * (_ONE - s))
                    dy = go * zt * s
                    dys[t] = dy
                    dD_acc += dy * u_row[t]
            else:
                for t in range(L):
                    dy = dout_row[t]
                    dys[t] = dy
                    dD_acc += dy * u_row[t]
            # 3. reverse recurrence: carry = dLoss/dh_t flowing back through the decay
            for n in range(N):
                carry[n] = dlast[ch, n]
                dA_acc[n] = _ZERO
            du_row = du[ch]
            ddelta_row = ddelta[ch]
            for t in range(L - 1, -1, -1):
                dt = steps[t]
                ut = u_row[t]
                dy = dys[t]
                du_t = dy * d_e
                ddt = _ZERO
                b_t = Bt[row0 + t]
                c_t = Ct[row0 + t]
                db_t = dB[row0 + t]
                dc_t = dC[row0 + t]
                h_prev = states[t]
                h_t = states[t + 1]
                a_t = decays[t]
                dtu = dt * ut
                for n in range(N):
                    gn = dy * c_t[n] + carry[n]
                    a = a_t[n]
                    dc_t[n] += dy * h_t[n]
                    ga = gn * a * h_prev[n]
                    dA_acc[n] += ga * dt
                    gB = gn * b_t[n]
                    ddt += ga * a_row[n] + ut * gB
                    du_t += dt * gB
                    db_t[n] += gn * dtu
                    carry[n] = a * gn
                ddelta_row[t] = ddt
                du_row[t] = du_t
            # 4. through softplus and the bias
            dbias_acc = _ZERO
            if softplus:
                delta_row = delta[ch]
                bias_e = bias[e]
                for t in range(L):
                    raw = delta_row[t] + bias_e
                    slope = _ONE if raw > _SOFTPLUS_THRESHOLD else _sigmoid32(raw)
                    gd = ddelta_row[t] * slope
                    ddelta_row[t] = gd
                    dbias_acc += gd
            else:
                for t in range(L):
                    dbias_acc += ddelta_row[t]
            for n in range(N):
                dA_ch[ch, n] = dA_acc[n]
            dD_ch[ch] = dD_acc
            dbias_ch[ch] = dbias_acc


def _np(t: torch.Tensor, *shape: int) -> np.ndarray:
    """Zero-copy numpy view (reshaped) of a contiguous float32 CPU tensor."""
    return t.detach().view(*shape).numpy()


_EMPTY_2D = np.zeros((1, 1), dtype=np.float32)


def _worker_parts(channels: int) -> int:
    """How many contiguous channel ranges to hand to numba's workers (one per thread)."""
    return max(1, min(numba.get_num_threads(), channels))


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
        _forward_kernel(_np(u, channels, L), _np(delta, channels, L), A.detach().numpy(),
                        _np(Bt, rows, N), _np(Ct, rows, N), D.detach().numpy(),
                        _np(z, channels, L) if z is not None else _EMPTY_2D,
                        delta_bias.detach().numpy(), _np(out, channels, L), _np(last, channels, N),
                        E, G, bool(softplus), z is not None, _worker_parts(channels))
        ctx.save_for_backward(u, delta, A, Bt, Ct, D, z, delta_bias)
        ctx.softplus = bool(softplus)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, Bt, Ct, D, z, delta_bias = ctx.saved_tensors
        batch, E, L = u.shape
        N = A.shape[1]
        G = Bt.shape[1]
        rows, channels = batch * G * L, batch * E
        parts = _worker_parts(channels)
        dout = dout.float().contiguous() if dout is not None else torch.zeros_like(u)
        dlast = dlast.float().contiguous() if dlast is not None else u.new_zeros(batch, E, N)
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(u) if z is not None else None
        dA_ch = u.new_empty(batch, E, N)
        dD_ch, dbias_ch = u.new_empty(batch, E), u.new_empty(batch, E)
        dBt_part = u.new_zeros(parts, rows, N)
        dCt_part = u.new_zeros(parts, rows, N)
        _backward_kernel(_np(u, channels, L), _np(delta, channels, L), A.detach().numpy(),
                         _np(Bt, rows, N), _np(Ct, rows, N), D.detach().numpy(),
                         _np(z, channels, L) if z is not None else _EMPTY_2D,
                         delta_bias.detach().numpy(), _np(dout, channels, L), _np(dlast, channels, N),
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
    E = u.shape[1]
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
