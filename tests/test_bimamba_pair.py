"""A Vim layer pair run as one (``nn.bimamba_pair``: LayerNorm affines folded into a stacked
in_proj, four scan slots in one kernel, one out_proj) against the two blocks run one by one."""

from __future__ import annotations

import torch
from tolerances import assert_close_to_scale, sum_ulps

from ssamba.nn.bimamba_pair import pair_inference
from ssamba.nn.mamba import BiMamba, MambaBlock, pair_applies

torch.set_num_threads(1)


def _blocks(d_model: int = 32, seed: int = 0) -> tuple[MambaBlock, MambaBlock]:
    torch.manual_seed(seed)
    blocks = [MambaBlock(d_model, BiMamba(d_model, d_state=16, num_layers=4, scan_backend="fused")) for _ in range(2)]
    with torch.no_grad():   # non-trivial parameters (LayerNorm affines included), different per block
        for block in blocks:
            for p in block.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return blocks[0].eval(), blocks[1].eval()


def _one_by_one(block_f, block_b, hidden, residual, lengths=None):
    hidden_f, residual_f = block_f(hidden, residual, lengths=lengths)
    hidden_b, residual_b = block_b(hidden, residual, reverse=True, lengths=lengths)
    return hidden_f + hidden_b, residual_f + residual_b


def test_pair_equals_the_two_blocks_with_and_without_lengths():
    block_f, block_b = _blocks()
    hidden, residual = torch.randn(2, 45, 32), torch.randn(2, 45, 32)
    lengths = torch.tensor([45, 19])
    with torch.no_grad():
        assert pair_applies(block_f, block_b, hidden)
        for res, lens in ((None, None), (residual, None), (residual, lengths)):
            got = pair_inference(block_f, block_b, hidden, res, lens)
            want = _one_by_one(block_f, block_b, hidden, res, lens)
            for g, w in zip(got, want):   # longest sums: the scan's L·N and the projections' 2·d_model inputs
                assert_close_to_scale(g, w, sum_ulps(45 * 16 + 2 * 32))
            if lens is not None:
                assert got[0][1, 19:].abs().max() == 0     # padding outputs are zeros


def test_cached_parameters_follow_in_place_updates():
    block_f, block_b = _blocks(seed=1)
    hidden = torch.randn(1, 30, 32)
    with torch.no_grad():
        before = pair_inference(block_f, block_b, hidden, None)[0]
        block_b.norm.weight.mul_(1.5)          # as an optimizer step would: same storage, new version
        block_f.mixer.A_b_log.add_(0.2)
        after = pair_inference(block_f, block_b, hidden, None)[0]
        want = _one_by_one(block_f, block_b, hidden, None)[0]
    assert (after - before).abs().max() > 1e-3
    assert_close_to_scale(after, want, sum_ulps(30 * 16 + 2 * 32))


def test_pair_only_without_autograd_and_with_identity_drop_path(monkeypatch):
    block_f, block_b = _blocks()
    hidden = torch.randn(1, 8, 32)
    assert not pair_applies(block_f, block_b, hidden)        # grad enabled, parameters require grad
    with torch.no_grad():
        assert pair_applies(block_f, block_b, hidden)
        block_f.drop_path.p = 0.1
        block_f.drop_path.train()
        assert not pair_applies(block_f, block_b, hidden)
        block_f.drop_path.eval()
        monkeypatch.setenv("SSAMBA_FUSED_PAIR", "0")
        assert not pair_applies(block_f, block_b, hidden)
