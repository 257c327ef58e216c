"""Per-item seeds: a run's random crops and augmentations are a function of (seed, epoch, index)
only, so they are the same with any number of workers or processes, and after a resume."""

from __future__ import annotations


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A per-item seed that depends only on (seed, epoch, index) (for random crops)."""
    return (((seed * 1_000_003) ^ (epoch * 7_919)) * 1_000_033 + index) % (2 ** 62)
