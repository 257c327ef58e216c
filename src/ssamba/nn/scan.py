"""Selective scan (the Mamba S6 recurrence) with interchangeable backends.

Semantics and shapes follow mamba_ssm's ``selective_scan_fn``:
    u, delta: (batch, E, L); A: (E, N); B, C: (batch, N, L) or grouped (batch, G, N, L);
    D: (E,); z: (batch, E, L); delta_bias: (E,).
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t;  y_t = <h_t, C_t> + D * u_t;
    out = y * silu(z) when z is given.

Backends: "ref" (sequential oracle). Others are added in this module and chosen here only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_groups(X: torch.Tensor, channels: int) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) -> (batch, E, N, L) by repeating groups."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    groups = X.shape[1]
    return X.repeat_interleave(channels // groups, dim=1)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False):
    """Sequential float32 reference: slow, obviously correct, differentiable by autograd."""
    dtype_in = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    E, L = u.shape[1], u.shape[2]
    Bx, Cx = _expand_groups(B, E), _expand_groups(C, E)  # (batch, E|1, N, L)
    h = u.new_zeros(u.shape[0], E, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, :, t, None] * A)                      # (batch, E, N)
        dBu = (delta[:, :, t] * u[:, :, t])[:, :, None] * Bx[:, :, :, t]
        h = dA * h + dBu
        ys.append((h * Cx[:, :, :, t]).sum(-1))                       # (batch, E)
    y = torch.stack(ys, dim=-1) if L > 0 else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False, backend=None):
    """Run the selective scan with the chosen (or automatically picked) backend."""
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
