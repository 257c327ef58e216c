"""The bidirectional mixer, token-major, for ONNX export: the same maths as
``BiMamba._forward_autograd`` with no transpose at all.

Why: the eager mixer works channel-major (B, E, L) because the scan backends want that layout;
traced into ONNX, its permutes become Transpose nodes that onnxruntime runs element by element
(measured: ~30 % of an exported layer's time). Here everything stays (B, L, channels): in_proj's
output is already token-major, the causal depthwise conv is a sum of d_conv shifted slices, the
per-direction x_proj / dt_proj are plain Linear calls (so int8 export keeps them float by name),
and the scan is ``scan_export.chunk_scan_tokens`` with the two directions as two groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssamba.nn.scan_export import chunk_scan_tokens, stable_softplus


def _causal_conv_silu(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """silu(depthwise causal conv) over time of (B, L, C) with weight (C, 1, d_conv), bias (C,)."""
    d_conv, length = weight.shape[-1], u.shape[1]
    padded = torch.cat([torch.zeros_like(u[:, :1]).expand(-1, d_conv - 1, -1), u], dim=1)
    out = bias + padded[:, :length] * weight[:, 0, 0]
    for j in range(1, d_conv):
        out = out + padded[:, j:j + length] * weight[:, 0, j]
    return F.silu(out)


def bimamba_export_forward(mixer, hidden: torch.Tensor) -> torch.Tensor:
    """(B, L, D) -> (B, L, D) for a ``BiMamba`` ``mixer``, token-major (equal to its eager path)."""
    batch, length, _ = hidden.shape
    E, R, N = mixer.d_inner, mixer.dt_rank, mixer.d_state
    xz = mixer.in_proj(hidden)                                              # (B, L, 2E)
    x, z = xz[..., :E], xz[..., E:]
    # both directions side by side on the channel axis: [forward | backward (time-flipped)]
    u = torch.cat([x, x.flip(1)], dim=2)
    u = _causal_conv_silu(u, torch.cat([mixer.conv1d.weight, mixer.conv1d_b.weight]),
                          torch.cat([mixer.conv1d.bias, mixer.conv1d_b.bias]))
    u_f, u_b = u[..., :E], u[..., E:]
    x_f, x_b = mixer.x_proj(u_f), mixer.x_proj_b(u_b)                       # (B, L, R + 2N) each
    delta = stable_softplus(torch.stack([mixer.dt_proj(x_f[..., :R]), mixer.dt_proj_b(x_b[..., :R])], dim=2))
    B = torch.stack([x_f[..., R:R + N], x_b[..., R:R + N]], dim=2)          # (B, L, 2, N)
    C = torch.stack([x_f[..., R + N:], x_b[..., R + N:]], dim=2)
    u2 = u.reshape(batch, length, 2, E)
    A = -torch.exp(torch.stack([mixer.A_log, mixer.A_b_log]).float()).transpose(1, 2)   # (2, N, E)
    y, _ = chunk_scan_tokens(delta, delta * u2, A, B, C)
    y = y + u2 * torch.stack([mixer.D, mixer.D_b]).float()                  # (B, L, 2, E)
    y = (y[:, :, 0] + y[:, :, 1].flip(1)) * F.silu(z) / 2
    return mixer.out_proj(y)
