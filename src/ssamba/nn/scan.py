"""Selective scan (the Mamba S6 recurrence) with interchangeable backends, chosen here only.

Semantics and shapes follow mamba_ssm's ``selective_scan_fn``:
    u, delta: (batch, E, L); A: (E, N); B, C: (batch, N, L) or grouped (batch, G, N, L);
    D: (E,); z: (batch, E, L); delta_bias: (E,).
    delta <- softplus(delta + delta_bias) (softplus when ``delta_softplus``);
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t;  y_t = <h_t, C_t> + D * u_t;
    out = y * silu(z) when z is given. Computed in float32 (float64 stays float64), returned in
    the input dtype; the last state (batch, E, N) is returned in the compute dtype.

Backends:
    "ref"      sequential loop: slow, obviously correct, the oracle of the tests;
    "chunked"  eager PyTorch by chunks (``scan_chunked``): any device, autograd, O(L·E·N) memory;
    "fused"    numba CPU kernels for forward and backward (``scan_fused``): O(L·E) memory, fast;
    "cuda"     mamba_ssm's CUDA kernel (``selective_scan_fn``) for CUDA tensors;
    "export"   closed-form chunks with static shapes (``scan_export``), for ONNX export.
Choice: the ``backend`` argument > env var ``SSAMBA_SCAN_BACKEND`` > automatic (CUDA tensors:
"cuda" when mamba_ssm imports, else "chunked"; CPU: "fused" when numba works, else "chunked").
"auto" (or an empty value) means automatic. Which backend runs is logged once per
(backend, device, dtype) on the ``ssamba.nn.scan`` logger.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Callable

import torch

from ssamba.errors import ConfigError
from ssamba.nn.scan_io import finish_output, prepare_inputs

BACKENDS = ("ref", "chunked", "fused", "cuda", "export")
ENV_VAR = "SSAMBA_SCAN_BACKEND"
_log = logging.getLogger(__name__)
_already_logged: set[tuple[str, str, str]] = set()


def _expand_groups(X: torch.Tensor, channels: int) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) -> (batch, E, N, L) by repeating groups."""
    if X.dim() == 3:
        return X.unsqueeze(1)
    groups = X.shape[1]
    return X.repeat_interleave(channels // groups, dim=1)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False):
    """Sequential reference: slow, obviously correct, differentiable by autograd."""
    dtype_in = u.dtype
    u, delta, A, B, C = prepare_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    E, L = u.shape[1], u.shape[2]
    Bx, Cx = _expand_groups(B, E), _expand_groups(C, E)  # (batch, E|1, N, L)
    h = u.new_zeros(u.shape[0], E, A.shape[1])
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, :, t, None] * A)                      # (batch, E, N)
        dBu = (delta[:, :, t] * u[:, :, t])[:, :, None] * Bx[:, :, :, t]
        h = dA * h + dBu
        ys.append((h * Cx[:, :, :, t]).sum(-1))                       # (batch, E)
    y = finish_output(torch.stack(ys, dim=-1) if L > 0 else u.new_zeros(u.shape), u, D, z, dtype_in)
    return (y, h) if return_last_state else y


@functools.lru_cache(maxsize=None)
def _numba_works() -> bool:
    """True when numba imports (the fused kernels are compiled lazily on first use)."""
    try:
        import numba  # noqa: F401

        from ssamba.nn import scan_fused  # noqa: F401
    except Exception:  # ImportError, or a numba/llvmlite that fails to load
        return False
    return True


@functools.lru_cache(maxsize=None)
def _mamba_ssm_scan() -> Callable | None:
    """mamba_ssm's CUDA ``selective_scan_fn`` when it imports, else None."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:
        return None
    return selective_scan_fn


def _fused_max_state() -> int:
    from ssamba.nn._numba import MAX_STATE
    return MAX_STATE


def _fused_lanes() -> int:
    """Channels per block of the fused kernels (the time-major mixer kernels need d_inner >= it)."""
    from ssamba.nn._numba import LANES
    return LANES


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` in this environment, in order of preference."""
    device = torch.device(device)
    names = []
    if device.type == "cuda" and _mamba_ssm_scan() is not None:
        names.append("cuda")
    if device.type == "cpu" and _numba_works():
        names.append("fused")
    return names + ["chunked", "ref", "export"]


def resolve_backend(tensor: torch.Tensor | torch.device | str, requested: str | None = None) -> str:
    """The backend that ``selective_scan`` would use for inputs on ``tensor``'s device.

    ``requested`` (argument) wins over the ``SSAMBA_SCAN_BACKEND`` env var, which wins over the
    automatic choice. A backend that cannot run there is an error, not a silent fallback.
    """
    device = tensor.device if isinstance(tensor, torch.Tensor) else torch.device(tensor)
    source = "backend argument"
    if not requested:
        requested, source = os.environ.get(ENV_VAR, ""), f"env var {ENV_VAR}"
    name = (requested or "auto").strip().lower()
    if name == "auto":
        return available_backends(device)[0]
    if name not in BACKENDS:
        raise ConfigError(f"{source}: unknown selective-scan backend {requested!r}; "
                          f"choose one of {', '.join(BACKENDS)} or auto")
    if name not in available_backends(device):
        why = {"fused": "needs CPU tensors and a working numba",
               "cuda": "needs CUDA tensors and an importable mamba_ssm"}[name]
        raise ConfigError(f"{source}: selective-scan backend {name!r} cannot run on {device.type} "
                          f"here ({why}); available: {', '.join(available_backends(device))}")
    return name


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Shape checks with one-line messages naming the argument (catches layout mix-ups early)."""
    if u.dim() != 3:
        raise ConfigError(f"selective_scan: u must be (batch, E, L), got shape {tuple(u.shape)}")
    batch, E, L = u.shape
    if delta.shape != u.shape:
        raise ConfigError(f"selective_scan: delta has shape {tuple(delta.shape)}, expected {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != E:
        raise ConfigError(f"selective_scan: A must be (E={E}, N), got shape {tuple(A.shape)}")
    N = A.shape[1]
    for name, X in (("B", B), ("C", C)):
        grouped = X.dim() == 4 and X.shape[1] > 0 and E % X.shape[1] == 0
        if not ((X.dim() == 3 and X.shape == (batch, N, L))
                or (grouped and X.shape[0] == batch and X.shape[2:] == (N, L))):
            raise ConfigError(f"selective_scan: {name} must be (batch={batch}, N={N}, L={L}) or "
                              f"(batch, G, N, L) with G dividing E={E}, got shape {tuple(X.shape)}")
    for name, X in (("D", D), ("delta_bias", delta_bias)):
        if X is not None and X.shape != (E,):
            raise ConfigError(f"selective_scan: {name} must be (E={E},), got shape {tuple(X.shape)}")
    if z is not None and z.shape != u.shape:
        raise ConfigError(f"selective_scan: z has shape {tuple(z.shape)}, expected {tuple(u.shape)}")


def _run_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    return _mamba_ssm_scan()(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _run_chunked(*args):
    from ssamba.nn.scan_chunked import selective_scan_chunked
    return selective_scan_chunked(*args)


def _run_fused(*args):
    from ssamba.nn.scan_fused import selective_scan_fused
    return selective_scan_fused(*args)


def _run_export(*args):
    from ssamba.nn.scan_export import selective_scan_export
    return selective_scan_export(*args)


_IMPLEMENTATIONS = {"ref": selective_scan_ref, "chunked": _run_chunked,
                    "fused": _run_fused, "cuda": _run_cuda, "export": _run_export}


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False, backend: str | None = None):
    """Run the selective scan with the chosen (or automatically picked) backend.

    Returns ``out`` (batch, E, L) in u's dtype, or ``(out, last_state)`` when
    ``return_last_state``. Differentiable with every backend.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(u, backend)
    if name == "fused" and A.shape[1] > _fused_max_state() and not (backend or os.environ.get(ENV_VAR)):
        name = "chunked"    # automatic choice only: an explicit "fused" request gets the error
    key = (name, u.device.type, str(u.dtype).replace("torch.", ""))
    if key not in _already_logged:
        _already_logged.add(key)
        _log.info("ssamba.nn.scan: using %s scan on %s, %s", *key)
    return _IMPLEMENTATIONS[name](u, delta, A, B, C, D, z, delta_bias,
                                  bool(delta_softplus), bool(return_last_state))
