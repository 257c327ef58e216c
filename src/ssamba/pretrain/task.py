"""The masked-patch pretraining task: encoder + learnable mask embedding + two prediction heads.

Parameter names follow the official ``AMBAModel``/``ASTModel`` (``mask_embed``, ``cpredlayer``,
``gpredlayer``) so the pretraining heads of an official ``.pth`` map onto this module one to one
(the encoder lives under ``encoder.``). As a trainer task, ``forward(batch)`` returns a dict with
``loss`` and metrics (``nce``, ``mse``, ``acc``: masked-patch InfoNCE accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssamba.config import check_choice
from ssamba.pretrain.masking import MASKING_MODES, batch_masks, num_masked_for
from ssamba.pretrain.objectives import info_nce, patch_mse, prediction_head

OBJECTIVES = ("joint", "nce", "mse")


@dataclass
class MaskedPatchConfig:
    """What to mask and which loss to train on.

    ``num_masked``: masked patches per clip (paper: 250/300/400 of 512); when None,
    ``mask_ratio`` of the clip's patches. ``two_pass``: the official joint form (two encoder passes
    with independent masks, one per objective); False runs one pass and both heads on one mask.
    ``valid_num_masked``: masked patches per clip in eval mode (the official validation always masks
    400, whatever the training count); None = as in training.
    """

    masking: str = "cluster"
    num_masked: int | None = 400
    mask_ratio: float = 0.5
    objective: str = "joint"
    mse_weight: float = 10.0
    two_pass: bool = True
    valid_num_masked: int | None = None

    def __post_init__(self) -> None:
        check_choice("pretrain.masking", self.masking, MASKING_MODES)
        check_choice("pretrain.objective", self.objective, OBJECTIVES)


def _batch_fbank(batch) -> torch.Tensor:
    return batch["fbank"] if isinstance(batch, dict) else batch


class MaskedPatchPretraining(nn.Module):
    """SSAST/SSAMBA pretraining model around any encoder that follows the AudioEncoder contract."""

    def __init__(self, encoder: nn.Module, config: MaskedPatchConfig | None = None, patch_dim: int = 256,
                 seed: int = 0) -> None:
        super().__init__()
        self.config = config or MaskedPatchConfig()
        self.encoder = encoder
        dim = encoder.config.embed_dim
        self.mask_embed = nn.Parameter(nn.init.xavier_normal_(torch.zeros(1, 1, dim)))
        self.cpredlayer = prediction_head(dim, patch_dim)
        self.gpredlayer = prediction_head(dim, patch_dim)
        # masks are drawn from this generator (always on CPU) so they are seeded and resumable
        self.mask_generator = torch.Generator().manual_seed(seed)

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators whose state the trainer saves and restores with a checkpoint."""
        return {"mask": self.mask_generator}

    def _encode_masked(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One masked encoder pass: returns (tokens of the masked patches (B, M, D), their raw patches (B, M, K))."""
        grid = self.encoder.patch_grid(fbank.shape[1])
        num_masked = self.config.num_masked
        if not self.training and self.config.valid_num_masked is not None:
            num_masked = self.config.valid_num_masked
        count = num_masked_for(grid, num_masked, self.config.mask_ratio)
        indices, mask = batch_masks(fbank.shape[0], grid, count, self.config.masking, self.mask_generator)
        indices, mask = indices.to(fbank.device), mask.to(fbank.device)
        tokens = self.encoder.forward_features(fbank, mask=mask, mask_embed=self.mask_embed)
        tokens = tokens[:, self.encoder.num_cls_tokens:, :]
        dim = tokens.shape[-1]
        masked_tokens = torch.gather(tokens, 1, indices.unsqueeze(-1).expand(-1, -1, dim))
        patches = self.encoder.patchify(fbank).detach()
        targets = torch.gather(patches, 1, indices.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return masked_tokens, targets

    def metric_names(self) -> set[str]:
        """The keys ``forward`` returns for this config (what ``train.monitor`` may name)."""
        objective = self.config.objective
        names = {"loss"}
        if objective in ("joint", "nce"):
            names |= {"nce", "acc"}
        if objective in ("joint", "mse"):
            names.add("mse")
        return names

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """Loss and metrics for one batch: ``{"loss", "nce", "mse", "acc"}`` (only those that apply)."""
        fbank = _batch_fbank(batch)
        objective = self.config.objective
        out: dict[str, torch.Tensor] = {}
        if objective in ("joint", "nce"):
            tokens, targets = self._encode_masked(fbank)
            out["nce"], out["acc"] = info_nce(self.cpredlayer(tokens), targets)
        if objective in ("joint", "mse"):
            if objective == "mse" or self.config.two_pass:
                tokens, targets = self._encode_masked(fbank)  # official: a second pass with a fresh mask
            out["mse"] = patch_mse(self.gpredlayer(tokens), targets)
        if objective == "joint":
            out["loss"] = out["nce"] + self.config.mse_weight * out["mse"]
        else:
            out["loss"] = out[objective]
        return out
