"""Masked-patch objectives of SSAST/SSAMBA: discriminative InfoNCE (``mpc``) and generative MSE (``mpg``).

Both heads predict the raw 256-value (16 x 16) input patch of every masked position.
- InfoNCE, as the official ``mpc``: per clip, ``scores[i, j] = target_i . pred_j`` over its M masked
  patches; log-softmax over the predictions ``j`` (last dim); loss = -mean of the diagonal over
  clips and patches. Accuracy, as the official code computes it: the scores are softmaxed over
  the predictions (rows), then prediction ``j`` counts as correct when its own target ``j`` holds
  the largest row-probability in column ``j`` (argmax over dim 0 of the row-softmaxed matrix).
- MSE, as the official ``mpg``: mean squared error between prediction and raw patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def prediction_head(embed_dim: int, patch_dim: int = 256) -> nn.Sequential:
    """MLP D -> D -> patch_dim with ReLU, the layout of the official ``cpredlayer``/``gpredlayer``."""
    return nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, patch_dim))


def info_nce(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over the masked patches of each clip; returns ``(loss, accuracy)``.

    ``pred``, ``target``: (B, M, K). Negatives of a patch are the other masked patches of the same clip.
    """
    scores = torch.bmm(target.float(), pred.float().transpose(1, 2))  # (B, M targets, M predictions)
    log_probs = F.log_softmax(scores, dim=-1)
    loss = -torch.diagonal(log_probs, dim1=1, dim2=2).mean()
    positions = torch.arange(scores.shape[1], device=scores.device)
    accuracy = (log_probs.argmax(dim=1) == positions).float().mean()   # log is monotone: same argmax
    return loss, accuracy.detach()


def patch_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true patches (the official ``mpg`` loss)."""
    return F.mse_loss(pred.float(), target.float())
