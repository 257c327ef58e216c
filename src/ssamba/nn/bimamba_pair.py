"""Both Mamba blocks of a Vim layer pair in one set of kernel calls (inference, CPU, float32).

Why: at short inputs the fused mixer spends a good part of its time in hand-offs between torch's
ops and numba's kernels (each wakes the other's threads) and in small matmuls. The two blocks
of a pair read the same input — block 2i runs on (hidden, residual), block 2i+1 on both flipped,
which ``reverse=True`` computes without flips — so they can run as one wider problem:

* ``residual = hidden + residual`` once; LayerNorm without its affine once, the two blocks'
  affines folded into one stacked in_proj: ``(x̂·w + b) @ W.T = x̂ @ (W·w).T + W @ b`` (exact in
  real arithmetic; float32 rounds the products in another order);
* one conv kernel and one scan kernel for the four (mixer, direction) slots, and one batched
  matmul each for x_proj and dt_proj;
* ``out_f + out_b = [y_f | y_b] @ [W_out_f | W_out_b].T``: the pair's sum is one matmul.

The stacked parameters are built once per parameter state (``bimamba_fused.cached``).
When it applies: ``nn.mamba.pair_applies`` (``SSAMBA_FUSED_PAIR=0``: never, for comparison).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssamba.nn.bimamba_fused import _direction_params, cached, clip_rows, run_mixers, scatter_rows


def _pair_params(block_f, block_b) -> dict[str, torch.Tensor]:
    """Slots [f fwd, f bwd, b's forward-in-time, b's backward-in-time] (block b runs reversed), the
    LayerNorm affines folded into a stacked in_proj, and the two out_proj side by side."""
    fwd, bwd = _direction_params(block_f.mixer, False), _direction_params(block_b.mixer, True)
    params = {key: torch.cat([fwd[key], bwd[key]]).contiguous() for key in fwd}
    in_f, in_b = block_f.mixer.in_proj.weight, block_b.mixer.in_proj.weight
    params["in_w"] = torch.cat([in_f * block_f.norm.weight, in_b * block_b.norm.weight]).contiguous()
    params["in_b"] = torch.cat([in_f @ block_f.norm.bias, in_b @ block_b.norm.bias]).contiguous()
    params["out_w"] = torch.cat([block_f.mixer.out_proj.weight, block_b.mixer.out_proj.weight], dim=1).t().contiguous()
    return params


def pair_inference(block_f, block_b, hidden: torch.Tensor, residual: torch.Tensor | None,
                   lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden, residual) after the layer pair: ``(out_f + out_b, 2·(hidden + residual))``, what
    ``block_f(hidden, residual)`` and ``block_b(hidden, residual, reverse=True)`` sum to.
    ``lengths`` as in ``bimamba_fused.bimamba_inference`` (padding outputs are zeros)."""
    batch, length, d_model = hidden.shape
    starts, valid, keep = clip_rows(lengths, batch, length)
    with torch.no_grad():
        residual = hidden if residual is None else residual + hidden
        params = cached(block_f, "pair", [*block_f.parameters(), *block_b.parameters()],
                        lambda: _pair_params(block_f, block_b))
        rows = residual.reshape(batch * length, d_model)
        if keep is not None:
            rows = rows.index_select(0, keep.to(rows.device))
        normed = F.layer_norm(rows, (d_model,), eps=block_f.norm.eps)
        xz = torch.addmm(params["in_b"], normed, params["in_w"].t())                     # (rows, 4E)
        y = run_mixers(xz, params, starts, valid, block_f.mixer.dt_rank)                 # (rows, 2E)
        out = scatter_rows(y @ params["out_w"], keep, batch, length)
    return out, residual + residual
