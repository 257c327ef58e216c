"""Per-clip lengths in a padded batch: validity masks and the per-clip time reversal.

A batch of clips of different lengths is stored as (batch, L, ...) with each clip's valid
tokens first and padding after them. Bidirectional layers then need "reverse" to mean the
reversal of each clip's own tokens (what the clip would see alone), not of the padded
sequence: ``flip_clips`` reverses the first ``lengths[b]`` entries of clip b and leaves its
padding in place, so the padding still follows the clip's tokens in both scan directions.
"""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(batch, size) bool: True at the first ``lengths[b]`` positions of clip b."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def flip_clips(x: torch.Tensor, lengths: torch.Tensor | None, dim: int) -> torch.Tensor:
    """``x`` with each clip's first ``lengths[b]`` entries reversed along ``dim`` (batch is dim 0);
    a plain ``flip`` when ``lengths`` is None. Its own inverse."""
    if lengths is None:
        return x.flip(dim)
    dim = dim % x.dim()
    size = x.shape[dim]
    steps = torch.arange(size, device=x.device)[None, :]
    last = lengths.to(x.device)[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)            # (batch, size)
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], size
    return torch.gather(x, dim, index.view(shape).expand(x.shape))
