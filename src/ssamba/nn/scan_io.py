"""What every torch scan backend does around its recurrence (the ``selective_scan`` contract):
inputs cast to the compute dtype with delta's bias and softplus applied, and the output's D
skip, SiLU(z) gate and cast back. Written once so the backends differ only in the recurrence."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def prepare_inputs(u, delta, A, B, C, delta_bias=None, delta_softplus: bool = False,
                   softplus: Callable[[torch.Tensor], torch.Tensor] = F.softplus):
    """(u, delta, A, B, C) in the compute dtype, delta with its bias added and softplus applied."""
    compute = compute_dtype(u.dtype)
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[None, :, None]
    if delta_softplus:
        delta = softplus(delta)
    return u, delta, A, B, C


def finish_output(y: torch.Tensor, u: torch.Tensor, D, z, dtype_out: torch.dtype,
                  silu: Callable[[torch.Tensor], torch.Tensor] = F.silu) -> torch.Tensor:
    """y + D·u, gated by SiLU(z), in ``dtype_out`` (u, y in the compute dtype)."""
    if D is not None:
        y = y + u * D.to(y.dtype)[None, :, None]
    if z is not None:
        y = y * silu(z.to(y.dtype))
    return y.to(dtype_out)
