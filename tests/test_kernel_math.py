"""The kernels' float32 math helpers against float64 references (they are only reached through
numba kernels elsewhere, where an error would hide in the scan's own rounding)."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from ssamba.nn._numba import _add_row_sums16, _softplus32, _softplus_sigmoid32
from tests.tolerances import ELEMENTWISE_ULPS, EPS32


@njit(cache=False)
def _both(x, softplus, sigmoid, reference_softplus):
    for i in range(x.shape[0]):
        softplus[i], sigmoid[i] = _softplus_sigmoid32(x[i])
        reference_softplus[i] = _softplus32(x[i])


def _inputs() -> np.ndarray:
    grid = np.linspace(-40.0, 40.0, 20001)
    edges = [0.0, -0.0, 20.0, np.nextafter(20.0, 21.0), -20.0, 87.0, -87.0, 1e-6, -1e-6]
    return np.concatenate([grid, edges]).astype(np.float32)


def test_softplus_sigmoid_match_float64_and_softplus32():
    x = _inputs()
    softplus, sigmoid, reference = (np.empty_like(x) for _ in range(3))
    _both(x, softplus, sigmoid, reference)
    np.testing.assert_array_equal(softplus, reference)          # the same softplus as the forward's
    x64 = torch.from_numpy(x).double()
    want_sigmoid = torch.sigmoid(x64)
    want_softplus = torch.nn.functional.softplus(x64)
    # relative to each value (the backward multiplies gradients by it): a few roundings
    rel = (torch.from_numpy(sigmoid).double() - want_sigmoid).abs() / want_sigmoid
    assert rel.max().item() <= ELEMENTWISE_ULPS * EPS32, rel.max().item()
    rel = (torch.from_numpy(softplus).double() - want_softplus).abs() / want_softplus.clamp_min(1e-30)
    assert rel.max().item() <= ELEMENTWISE_ULPS * EPS32, rel.max().item()


@njit(cache=False)
def _row_sums_into(tile, first, dest, row, col):
    _add_row_sums16(tile, first, dest, row, col)


def test_row_sums16_adds_each_rows_lane_sum_into_one_destination_row():
    rng = np.random.default_rng(0)
    tile = rng.standard_normal((48, 16)).astype(np.float32)
    storage = rng.standard_normal((2, 9, 70)).astype(np.float32)
    dest = storage[1, :, 20:52]                       # a strided 2-D view, rows contiguous
    want = dest.astype(np.float64)
    want[4, 8:24] += tile[16:32].astype(np.float64).sum(axis=1)
    before = storage.copy()
    _row_sums_into(tile, 16, dest, 4, 8)
    # 16 float32 terms summed in another order, plus the add: a few roundings of the terms' size
    bound = 16 * EPS32 * np.abs(tile[16:32]).sum(axis=1).max() + EPS32 * np.abs(want).max()
    assert np.abs(dest - want).max() <= bound
    untouched = np.ones(storage.shape, dtype=bool)
    untouched[1, 4, 28:44] = False                    # only dest[4, 8:24] may change
    np.testing.assert_array_equal(storage[untouched], before[untouched])
