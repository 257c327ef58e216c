"""Cluster and random masking: exact counts, cluster shapes, seeding."""

import pytest
import torch

from ssamba.errors import ConfigError
from ssamba.pretrain.masking import batch_masks, cluster_mask_indices, num_masked_for, random_mask_indices

GRID = (8, 64)  # 1024 frames x 128 mel bins with 16x16 patches


@pytest.mark.parametrize("n", [1, 7, 250, 300, 400, 512])
@pytest.mark.parametrize("fn", [cluster_mask_indices, random_mask_indices])
def test_exact_count_distinct_in_range(fn, n):
    idx = fn(GRID, n, torch.Generator().manual_seed(n))
    assert idx.dtype == torch.long and idx.shape == (n,)
    assert len(set(idx.tolist())) == n
    assert idx.min() >= 0 and idx.max() < 512


def _components(idx, grid):
    """Connected components (4-neighbourhood) of the masked patches on the grid."""
    cells = {divmod(int(i), grid[1]) for i in idx}
    seen, comps = set(), []
    for c in cells:
        if c in seen:
            continue
        stack, comp = [c], []
        seen.add(c)
        while stack:
            f, t = stack.pop()
            comp.append((f, t))
            for nb in ((f + 1, t), (f - 1, t), (f, t + 1), (f, t - 1)):
                if nb in cells and nb not in seen:
                    seen.add(nb)
                    stack.append(nb)
        comps.append(comp)
    return comps


def test_cluster_masks_are_blocks_not_scattered():
    # a few clusters on a big grid: every component is a union of >= 3x3 blocks (trimmed only in the
    # last block), so components are large; random masking yields mostly isolated patches
    g = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(20):
        comps = _components(cluster_mask_indices(GRID, 40, g), GRID)
        sizes += [len(c) for c in comps]
    assert sum(s >= 4 for s in sizes) / len(sizes) > 0.7
    rand_comps = _components(random_mask_indices(GRID, 40, torch.Generator().manual_seed(0)), GRID)
    assert sum(len(c) for c in rand_comps) / len(rand_comps) < 2


def test_single_cluster_is_a_square_of_side_3_to_5():
    # asking for exactly one full block in the grid interior: a c x c square, c in {3, 4, 5}
    seen_sides = set()
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        idx = cluster_mask_indices((40, 40), 9, g)
        cells = [divmod(int(i), 40) for i in idx]
        fs = [c[0] for c in cells]
        ts = [c[1] for c in cells]
        # nine patches from the first block: they lie inside one square of side <= 5
        if max(fs) - min(fs) < 5 and max(ts) - min(ts) < 5:
            seen_sides.add(max(max(fs) - min(fs), max(ts) - min(ts)) + 1)
    assert seen_sides <= {3, 4, 5} and 3 in seen_sides


def test_seeding_reproducible_and_varies():
    a = batch_masks(4, GRID, 300, "cluster", torch.Generator().manual_seed(1))
    b = batch_masks(4, GRID, 300, "cluster", torch.Generator().manual_seed(1))
    c = batch_masks(4, GRID, 300, "cluster", torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # clips in a batch get independent masks, and the bool mask matches the indices
    assert not torch.equal(a[0][0], a[0][1])
    assert a[1].sum(1).tolist() == [300] * 4
    assert torch.equal(a[1].nonzero()[:, 1].view(4, 300), a[0])


def test_bad_counts_raise():
    with pytest.raises(ConfigError, match="num_masked"):
        cluster_mask_indices(GRID, 513, torch.Generator())
    with pytest.raises(ConfigError, match="num_masked"):
        random_mask_indices(GRID, 0, torch.Generator())
    with pytest.raises(ConfigError, match="masking"):
        batch_masks(1, GRID, 3, "stripes", torch.Generator())
    assert num_masked_for((8, 12), None, 0.5) == 48
    assert num_masked_for((8, 12), 10, 0.5) == 10
