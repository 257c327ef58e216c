"""Bidirectional Mamba mixer ("v2", as in the Vim fork used by SSAMBA) and its residual Block.

Parameter names and shapes equal the official ``mamba_simple.Mamba(bimamba_type="v2")`` and
``models_mamba.Block``, so official state_dicts load after a prefix filter.

Mixer, for hidden states (B, L, D) with E = expand * D channels:
  x, z = in_proj(h).chunk(2)                                 (shared, no bias)
  forward:  y_f = scan(silu(conv1d(x)), ...; A, D, dt_proj)  gated by silu(z)
  backward: y_b = flip(scan(silu(conv1d_b(flip x)), ...; A_b, D_b, dt_proj_b) gated by silu(flip z))
  out = out_proj((y_f + y_b) / 2)
The SiLU(z) gate is applied after the backward output is flipped back (the same product,
computed once). Both directions run in ONE ``selective_scan`` call: they are stacked along the channel axis
(2E channels, A/D/delta_bias concatenated) with B and C as two groups, which is exactly the
grouped-B/C semantics of the scan, so nothing about the maths changes.
Without autograd on CPU the mixer instead runs the fused inference kernels of
``ssamba.nn.bimamba_fused`` (same maths, no flips or copies). ``reverse=True`` computes
``flip(mixer(flip(h)))`` (the odd layer of a Vim layer pair) with no flip on the fast path.
While tracing for ONNX export it runs the token-major ``ssamba.nn.mamba_export`` (no transposes).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ssamba.errors import ConfigError
from ssamba.nn.droppath import DropPath
from ssamba.nn.lengths import flip_clips, valid_mask
from ssamba.nn.scan import _fused_lanes, _fused_max_state, _numba_works, resolve_backend, selective_scan

FUSED_TRAINING_ENV = "SSAMBA_FUSED_TRAINING"


def _init_dt_proj(dt_proj: nn.Linear, dt_rank: int, dt_min: float = 1e-3, dt_max: float = 0.1,
                  dt_init_floor: float = 1e-4) -> None:
    """Official dt init: weight ~ U(+-dt_rank^-0.5); bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]."""
    bound = dt_rank ** -0.5
    nn.init.uniform_(dt_proj.weight, -bound, bound)
    channels = dt_proj.weight.shape[0]
    dt = torch.exp(torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    with torch.no_grad():
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))


def _s4d_real_log(channels: int, d_state: int) -> torch.Tensor:
    """A_log with A = 1..N in every channel (S4D-real init); A = -exp(A_log)."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1).contiguous()


def _exporting() -> bool:
    """True while torch.onnx / torch.jit traces the model: use the exportable eager path."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class BiMamba(nn.Module):
    """Bidirectional selective-SSM mixer with shared in/out projections and per-direction SSM branches."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | None = None, num_layers: int = 1, scan_backend: str | None = None) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        E, R, N = self.d_inner, self.dt_rank, d_state

        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(_s4d_real_log(E, N))
        self.D = nn.Parameter(torch.ones(E))
        self.A_b_log = nn.Parameter(_s4d_real_log(E, N))
        self.conv1d_b = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1)
        self.x_proj_b = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj_b = nn.Linear(R, E, bias=True)
        self.D_b = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=False)
        for p in (self.A_log, self.A_b_log, self.D, self.D_b):
            p._no_weight_decay = True

        _init_dt_proj(self.dt_proj, R)
        _init_dt_proj(self.dt_proj_b, R)
        # official "rescale prenorm residual": out_proj kaiming-uniform scaled by 1/sqrt(num_layers)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.out_proj.weight /= math.sqrt(num_layers)

    def _fused_kernels_apply(self, hidden: torch.Tensor) -> bool:
        """True when the fused CPU kernels apply (float32, no autocast, the numba scan backend, not
        while tracing for ONNX export)."""
        return (not _exporting() and hidden.device.type == "cpu" and hidden.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")  # autocast makes the projections bfloat16
                and self.A_log.dtype == torch.float32 and self.d_state <= _fused_max_state()
                and self.d_inner >= _fused_lanes()  # the time-major kernels take LANES channels at a time
                and resolve_backend(hidden, self.scan_backend) == "fused")

    def _needs_grad(self, hidden: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in self.parameters()))

    def forward(self, hidden: torch.Tensor, reverse: bool = False,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``reverse=True`` returns ``flip(self(flip(hidden)))``.

        ``lengths`` (B,) int: clip b's valid tokens are its first ``lengths[b]``, then padding.
        Each clip's output equals the clip run alone; padding outputs are zeros, and
        ``reverse`` flips each clip's own tokens (``nn.lengths.flip_clips``).

        On CPU with the fused backend this runs the time-major numba kernels, which need no flips
        at all: ``bimamba_fused`` without autograd, the fused training Function ``bimamba_train``
        with it. ``SSAMBA_FUSED_TRAINING=0`` sends training through the eager path below (numba
        conv + fused scan with autograd over flips and concatenations) instead, for comparison.
        """
        if _exporting():   # token-major, no transposes in the traced graph
            if lengths is not None:
                raise ConfigError("lengths=: the ONNX export runs whole windows (export clips one at a time)")
            from ssamba.nn.mamba_export import bimamba_export_forward
            if reverse:
                return bimamba_export_forward(self, hidden.flip(1)).flip(1)
            return bimamba_export_forward(self, hidden)
        if self._fused_kernels_apply(hidden):
            if not self._needs_grad(hidden):
                from ssamba.nn.bimamba_fused import bimamba_inference
                return bimamba_inference(self, hidden, reverse, lengths)
            if os.environ.get(FUSED_TRAINING_ENV, "1") != "0":
                from ssamba.nn.bimamba_train import bimamba_train
                return bimamba_train(self, hidden, reverse, lengths)
        if reverse:
            return flip_clips(self._forward_autograd(flip_clips(hidden, lengths, 1), lengths), lengths, 1)
        return self._forward_autograd(hidden, lengths)

    def _forward_autograd(self, hidden: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), differentiable with every scan backend.

        With ``lengths`` the backward direction reads each clip reversed within its length, so
        in both directions the padding comes after the clip's tokens: the causal conv and scan
        never carry it into them. Its conv input is zeroed and its outputs set to zero.
        """
        batch, length, _ = hidden.shape
        E, R, N = self.d_inner, self.dt_rank, self.d_state
        xz = self.in_proj(hidden).transpose(1, 2)                  # (B, 2E, L)
        x, z = xz[:, :E], xz[:, E:]
        valid = None if lengths is None else valid_mask(lengths.to(x.device), length)[:, None]  # (B, 1, L)
        if valid is not None:
            x = torch.where(valid, x, 0.0)
        # both directions stacked on the channel axis: [forward | backward (time-flipped)]
        u = torch.cat([x, flip_clips(x, lengths, -1)], dim=1)      # (B, 2E, L)
        conv_w = torch.cat([self.conv1d.weight, self.conv1d_b.weight], dim=0)
        conv_b = torch.cat([self.conv1d.bias, self.conv1d_b.bias], dim=0)
        if u.device.type == "cpu" and u.dtype == torch.float32 and _numba_works() and not _exporting():
            # oneDNN's depthwise conv backward is very slow on CPU; this numba kernel is not
            from ssamba.nn.conv_fused import causal_conv1d_silu
            u = causal_conv1d_silu(u, conv_w[:, 0], conv_b)
        else:
            u = F.silu(F.conv1d(u, conv_w, conv_b, padding=self.d_conv - 1, groups=2 * E)[..., :length])

        # per-direction projections as one batched matmul: (2, B*L, E) @ (2, E, R+2N)
        u_rows = u.view(batch, 2, E, length).permute(1, 0, 3, 2).reshape(2, batch * length, E)
        x_w = torch.stack([self.x_proj.weight, self.x_proj_b.weight]).transpose(1, 2)
        x_dbl = torch.bmm(u_rows, x_w)                             # (2, B*L, R+2N)
        dt_w = torch.stack([self.dt_proj.weight, self.dt_proj_b.weight]).transpose(1, 2)
        delta = torch.bmm(x_dbl[..., :R], dt_w)                    # (2, B*L, E)
        delta = delta.view(2, batch, length, E).permute(1, 0, 3, 2).reshape(batch, 2 * E, length)
        bc = x_dbl[..., R:].view(2, batch, length, 2 * N).permute(1, 0, 3, 2)  # (B, 2, 2N, L)
        B_ssm, C_ssm = bc[:, :, :N].contiguous(), bc[:, :, N:].contiguous()

        A = -torch.exp(torch.cat([self.A_log, self.A_b_log], dim=0).float())
        D = torch.cat([self.D, self.D_b], dim=0).float()
        delta_bias = torch.cat([self.dt_proj.bias, self.dt_proj_b.bias], dim=0).float()
        y = selective_scan(u.contiguous(), delta.contiguous(), A, B_ssm, C_ssm, D,
                           delta_bias=delta_bias, delta_softplus=True,
                           backend="export" if _exporting() else self.scan_backend)
        # gate after un-flipping: flip(y_b * silu(flip z)) == flip(y_b) * silu(z), so both directions
        # share one gate and z is never flipped or copied
        y = (y[:, :E] + flip_clips(y[:, E:], lengths, -1)) * F.silu(z) / 2        # (B, E, L)
        if valid is not None:
            y = torch.where(valid, y, 0.0)
        return self.out_proj(y.transpose(1, 2))


class MambaBlock(nn.Module):
    """Add -> LayerNorm -> mixer, returning (mixer output, residual) as the official Vim Block.

    ``residual = residual + drop_path(hidden)`` (or ``hidden`` for the first block), then
    ``hidden = mixer(norm(residual))``.
    """

    def __init__(self, d_model: int, mixer: BiMamba, norm_eps: float = 1e-5, drop_path: float = 0.0) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None, reverse: bool = False,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``reverse=True`` equals flipping hidden and residual before and both outputs after
        (with ``lengths``, each clip's own tokens: see ``BiMamba.forward``)."""
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        hidden = self.mixer(self.norm(residual.to(self.norm.weight.dtype)), reverse=reverse, lengths=lengths)
        return hidden, residual
