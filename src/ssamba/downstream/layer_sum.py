"""A learned weighted sum of every layer's output, as s3prl's featurizer with ``-s hidden_states``
(the setup of the official VoxCeleb1 / IEMOCAP recipes): one scalar per layer, softmax-normalised,
all equal at the start.

The encoder's ``forward_layers`` gives the tokens after every layer (shallowest first; the last
equals ``forward_features``). The clip embedding is the weighted sum of the per-layer embeddings
(mean of the non-CLS tokens), the same as pooling the weighted sum of the tokens, since both
the sum and the mean are linear.

``pool_tokens`` (``ssamba.models``) is the pooling a fine-tuning head reads: the official mean,
mean‖std, or the frequency bands.
"""

from __future__ import annotations

import torch
from torch import nn

from ssamba.models.encoder import pool_tokens

LAYER_CHOICES = ("last", "weighted_sum")


class WeightedLayerSum(nn.Module):
    """``sum_l softmax(weights)_l * x_l`` over a list of same-shaped layer outputs."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers}: need at least one layer")
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(layers) != self.weights.numel():
            raise ValueError(f"got {len(layers)} layer outputs, the weighted sum has {self.weights.numel()} weights")
        stacked = torch.stack(list(layers), dim=0)
        norm = torch.softmax(self.weights, dim=0).to(stacked.dtype)
        return (norm.view(-1, *[1] * (stacked.dim() - 1)) * stacked).sum(dim=0)


def layer_embeddings(encoder: nn.Module, fbank: torch.Tensor, pooling: str = "mean",
                     lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The clip embedding of every layer of ``encoder`` (shallowest first), pooled by ``pooling``
    (``lengths``: the clips' frames in a padded batch, see ``AudioEncoder.forward_features``)."""
    return [pool_tokens(encoder, tokens, pooling, lengths) for tokens in encoder.forward_layers(fbank, lengths=lengths)]
