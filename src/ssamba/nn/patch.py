"""Patch embedding of a (time x frequency) fbank and positional-embedding resizing.

Token order is the official one: the fbank is viewed as an image (1, F, T) and a Conv2d patch
grid (f, t) is flattened frequency-major, so token ``i * t + j`` is frequency band ``i``,
time column ``j`` (all time patches of the lowest band come first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def patch_grid_size(input_fdim: int, input_tdim: int, fshape: int, tshape: int,
                    fstride: int, tstride: int) -> tuple[int, int]:
    """Number of patches (frequency, time) that a Conv2d with these kernel/stride gives."""
    return (input_fdim - fshape) // fstride + 1, (input_tdim - tshape) // tstride + 1


class PatchEmbed(nn.Module):
    """Conv2d patch projection; parameter names match the official ``v.patch_embed.proj``."""

    def __init__(self, embed_dim: int, fshape: int = 16, tshape: int = 16, fstride: int = 16,
                 tstride: int = 16) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=(fshape, tshape), stride=(fstride, tstride))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) fbank -> (B, f * t, D) patch embeddings in frequency-major order."""
        image = fbank.transpose(1, 2).unsqueeze(1)          # (B, 1, F, T)
        return self.proj(image).flatten(2).transpose(1, 2)


def patchify(fbank: torch.Tensor, fshape: int, tshape: int, fstride: int, tstride: int) -> torch.Tensor:
    """Raw input patches (B, P, fshape * tshape) in token order (official ``nn.Unfold`` targets)."""
    image = fbank.transpose(1, 2).unsqueeze(1)
    return F.unfold(image, kernel_size=(fshape, tshape), stride=(fstride, tstride)).transpose(1, 2)


def _fit_axis(grid: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Centre-crop or bilinearly stretch one axis (2 = frequency, 3 = time) of a (1, D, f, t) grid."""
    current = grid.shape[axis]
    if size == current:
        return grid
    if size < current:
        start = current // 2 - size // 2
        return grid.narrow(axis, start, size)
    target = list(grid.shape[2:])
    target[axis - 2] = size
    return F.interpolate(grid, size=tuple(target), mode="bilinear", align_corners=False)


def resize_pos_embed(patch_pos: torch.Tensor, src_grid: tuple[int, int],
                     dst_grid: tuple[int, int]) -> torch.Tensor:
    """Fit positional embeddings of a (f, t) patch grid to another grid, as the official fine-tuning does.

    ``patch_pos``: (1, f*t, D) without CLS entries. Time first, then frequency: an axis that
    shrinks is centre-cropped, one that grows is bilinearly interpolated. (The official code
    crops frequency with the time size by mistake; here the frequency size is used.)
    """
    if tuple(src_grid) == tuple(dst_grid):
        return patch_pos
    dim = patch_pos.shape[-1]
    grid = patch_pos.transpose(1, 2).reshape(1, dim, src_grid[0], src_grid[1])
    grid = _fit_axis(grid, dst_grid[1], axis=3)
    grid = _fit_axis(grid, dst_grid[0], axis=2)
    return grid.reshape(1, dim, dst_grid[0] * dst_grid[1]).transpose(1, 2)
