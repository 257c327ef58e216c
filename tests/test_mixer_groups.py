"""The fused inference mixer runs clips in groups of about GROUP_ROWS tokens (cache-sized): any
grouping gives the same outputs as one group, with and without per-clip lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerances import assert_close_to_scale, sum_ulps

from ssamba.nn import bimamba_fused
from ssamba.nn.mamba import BiMamba

torch.set_num_threads(1)


def test_clip_groups_cover_every_clip_once_in_order():
    assert bimamba_fused.clip_groups(np.array([30, 30, 30, 30]), 64) == [(0, 2), (2, 4)]
    assert bimamba_fused.clip_groups(np.array([100, 5, 5]), 64) == [(0, 1), (1, 3)]   # a long clip alone
    assert bimamba_fused.clip_groups(np.array([7]), 1) == [(0, 1)]


@pytest.mark.parametrize("lengths", [None, [37, 12, 30, 1]])
@pytest.mark.parametrize("reverse", [False, True])
def test_grouped_clips_equal_one_group(monkeypatch, lengths, reverse):
    torch.manual_seed(0)
    mixer = BiMamba(24, d_state=16, num_layers=4, scan_backend="fused").eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    hidden = torch.randn(4, 37, 24)
    lens = None if lengths is None else torch.tensor(lengths)
    with torch.no_grad():
        whole = bimamba_fused.bimamba_inference(mixer, hidden, reverse, lens)
        monkeypatch.setattr(bimamba_fused, "GROUP_ROWS", 40)       # 2-3 groups of clips
        grouped = bimamba_fused.bimamba_inference(mixer, hidden, reverse, lens)
    # the same arithmetic per token; matmuls of other sizes may order their sums differently
    assert_close_to_scale(grouped, whole, sum_ulps(2 * 24))
    if lens is not None:
        assert grouped[3, 1:].abs().max() == 0
