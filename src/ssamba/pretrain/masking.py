"""Which patches to mask in masked-patch pretraining: cluster masking and random masking.

Patches are indexed as the encoder orders its tokens: frequency-major, ``index = f * t_dim + t``
on a ``(f_dim, t_dim)`` patch grid (see ``AudioEncoder.patch_grid``).

Cluster masking follows the idea of the official SSAST/SSAMBA ``gen_maskid_patch``: per clip a
cluster side ``c`` is drawn from {3, 4, 5}; square ``c x c`` blocks of neighbouring patches
(``c`` frequency bands x ``c`` time steps) are placed at random starting patches until at least
``N`` distinct patches are covered. Deliberate differences from the official code, which change
only which patches are picked, not the statistics that matter:
- blocks are clipped at the grid border instead of wrapping from the last time step of one band
  into the next band, and patch 0 is not excluded (the official ``> 0`` test drops it);
- when the last block overshoots ``N``, a random subset of that block's new patches is dropped
  (the official code keeps the ``N`` lowest indices of a Python set, which biases masks towards
  low frequency bands).
All randomness comes from an explicit ``torch.Generator`` so masks are reproducible and resumable.
"""

from __future__ import annotations

import torch

from ssamba.config import check_choice
from ssamba.errors import ConfigError

MASKING_MODES = ("cluster", "random")


def _check(grid: tuple[int, int], num_masked: int) -> int:
    num_patches = int(grid[0]) * int(grid[1])
    if not 0 < num_masked <= num_patches:
        raise ConfigError(
            f"num_masked={num_masked}: must be between 1 and the number of patches ({num_patches}, grid {grid})")
    return num_patches


def random_mask_indices(grid: tuple[int, int], num_masked: int, generator: torch.Generator) -> torch.Tensor:
    """``num_masked`` distinct patch indices drawn uniformly, sorted ascending (LongTensor)."""
    num_patches = _check(grid, num_masked)
    return torch.randperm(num_patches, generator=generator)[:num_masked].sort().values


def cluster_mask_indices(grid: tuple[int, int], num_masked: int, generator: torch.Generator,
                         cluster_sizes: tuple[int, ...] = (3, 4, 5)) -> torch.Tensor:
    """``num_masked`` distinct patch indices made of square clusters of neighbouring patches.

    One cluster side is drawn per clip from ``cluster_sizes``; blocks start at uniformly random
    patches and are clipped at the grid border. Returns sorted indices (LongTensor).
    """
    num_patches = _check(grid, num_masked)
    f_dim, t_dim = int(grid[0]), int(grid[1])
    side = cluster_sizes[int(torch.randint(len(cluster_sizes), (1,), generator=generator))]
    covered = torch.zeros(num_patches, dtype=torch.bool)
    count = 0
    while count < num_masked:
        start = int(torch.randint(num_patches, (1,), generator=generator))
        f0, t0 = divmod(start, t_dim)
        block = covered.view(f_dim, t_dim)[f0:f0 + side, t0:t0 + side]
        new = (~block).nonzero()
        if len(new) == 0:
            continue
        excess = count + len(new) - num_masked
        if excess > 0:  # keep a random subset of this block's new patches so the count is exact
            keep = torch.randperm(len(new), generator=generator)[:len(new) - excess]
            new = new[keep]
        block[new[:, 0], new[:, 1]] = True
        count += len(new)
    return covered.nonzero().squeeze(1)


def mask_indices(grid: tuple[int, int], num_masked: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Indices for one clip with the named masking ``mode`` ("cluster" or "random")."""
    if mode == "cluster":
        return cluster_mask_indices(grid, num_masked, generator)
    if mode == "random":
        return random_mask_indices(grid, num_masked, generator)
    check_choice("masking", mode, MASKING_MODES)


def batch_masks(batch_size: int, grid: tuple[int, int], num_masked: int, mode: str,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for a batch: ``indices`` (B, N) long and the boolean ``mask`` (B, P), independent per clip."""
    indices = torch.stack([mask_indices(grid, num_masked, mode, generator) for _ in range(batch_size)])
    mask = torch.zeros(batch_size, grid[0] * grid[1], dtype=torch.bool)
    mask.scatter_(1, indices, True)
    return indices, mask


def num_masked_for(grid: tuple[int, int], num_masked: int | None, mask_ratio: float) -> int:
    """The number of masked patches: ``num_masked`` if given, else ``round(mask_ratio * P)`` (at least 1)."""
    num_patches = int(grid[0]) * int(grid[1])
    if num_masked is not None:
        return int(num_masked)
    if not 0.0 < mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio={mask_ratio}: must be between 0 and 1")
    return max(1, int(round(mask_ratio * num_patches)))
