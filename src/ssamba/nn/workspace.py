"""Reusable scratch tensors for the fused mixers' temporaries, one set per thread.

Why: every mixer of a training step allocates and frees the same few-MB temporaries (the scan
kernels' outputs, the conv output, the recomputed projections). glibc hands such blocks back to
the system when they are freed at the top of its heap, so the next mixer page-faults on every
4 KiB page it writes: measured in SSAMBA-tiny's training step at 512 tokens (2 threads), ~45 000
faults per step inside the backward scan kernel, about half of that kernel's time, varying from
run to run with the heap's history; batch-16 inference at 512 tokens, ~25 000-39 000 per forward.
Buffers kept here are written again instead.

A buffer belongs to its ``name`` until the next request for that name in the same thread, so
each call site uses its own name and drops the tensor before it asks again (the mixers' forward
and backward and the inference mixer use them only as temporaries). Buffers over
``MAX_KEPT_BYTES`` are not kept (a 22k-token clip's temporaries would hold ~240 MiB after the call).
"""

from __future__ import annotations

import math
import threading

import torch

MAX_KEPT_BYTES = 32 << 20   # per buffer: 2048-token inference groups, batch-16 training at 512 tokens; not long clips


class _Buffers(threading.local):
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}


_BUFFERS = _Buffers()


def scratch(name: str, *shape: int) -> torch.Tensor:
    """An uninitialised contiguous float32 CPU tensor of ``shape`` (whatever torch's default dtype and
    device), reused by later calls with ``name``."""
    numel = math.prod(shape)
    if numel * 4 > MAX_KEPT_BYTES:
        return torch.empty(shape, dtype=torch.float32, device="cpu")
    buffer = _BUFFERS.tensors.get(name)
    if buffer is None or buffer.numel() < numel:
        with torch.inference_mode(False):   # a normal tensor: writable under no_grad and inference_mode alike
            buffer = _BUFFERS.tensors[name] = torch.empty(numel, dtype=torch.float32, device="cpu")
    return buffer[:numel].view(shape)


def release() -> None:
    """Free this thread's kept buffers (they are allocated again on the next use)."""
    _BUFFERS.tensors.clear()
