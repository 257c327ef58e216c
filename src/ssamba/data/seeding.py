"""Per-item seeds: a run's random crops and augmentations are a function of (seed, epoch, index)
only, so they are the same with any number of workers or processes, and after a resume."""

from __future__ import annotations

import numpy as np


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A per-item seed that depends only on (seed, epoch, index): a hash (numpy's SeedSequence),
    so neighbouring items and epochs get unrelated streams. Fits in 63 bits (a torch seed)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
