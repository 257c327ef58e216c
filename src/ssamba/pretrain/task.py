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
from ssamba.pretrain.masking import MASKING_MODES, batch_masks, mask_indices, num_masked_for
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


def _batch_fbank(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(fbank, lengths or None): a batch is a tensor, or a dict with "fbank" (and "lengths" when
    dynamically padded, ``data.padding.pad_collate``)."""
    if isinstance(batch, dict):
        return batch["fbank"], batch.get("lengths")
    return batch, None


def _per_clip(loss_fn, preds: list[torch.Tensor], targets: list[torch.Tensor]) -> list[torch.Tensor]:
    """A batch loss over clips with different numbers of masked patches: each clip's value,
    weighted by its masked patches (so equal counts give the batched mean)."""
    counts = torch.tensor([len(t) for t in targets], dtype=torch.float32, device=targets[0].device)
    values = [loss_fn(p[None], t[None]) for p, t in zip(preds, targets)]
    values = [v if isinstance(v, tuple) else (v,) for v in values]
    return [torch.stack([v[k] for v in values]) @ counts / counts.sum() for k in range(len(values[0]))]


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

    def _encode_masked(self, fbank: torch.Tensor, lengths: torch.Tensor | None = None):
        """One masked encoder pass: returns (tokens of the masked patches (B, M, D), their raw patches (B, M, K)),
        or with ``lengths`` (clips of their own lengths) per-clip lists of (M_b, D) and (M_b, K)."""
        grid = self.encoder.patch_grid(fbank.shape[1])
        num_masked = self.config.num_masked
        if not self.training and self.config.valid_num_masked is not None:
            num_masked = self.config.valid_num_masked
        if lengths is not None:
            return self._encode_masked_clips(fbank, lengths, num_masked)
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

    def _encode_masked_clips(self, fbank: torch.Tensor, lengths: torch.Tensor, num_masked: int | None):
        """``_encode_masked`` for a dynamically padded batch: each clip is masked in its own patch
        grid, with the share of patches that a full crop (``input_tdim`` frames) would have masked."""
        full = self.encoder.patch_grid(self.encoder.config.input_tdim)
        share = num_masked_for(full, num_masked, self.config.mask_ratio) / (full[0] * full[1])
        columns = self.encoder.clip_columns(lengths, fbank.shape[1]).tolist()
        bands = full[0]
        indices = []
        for width in columns:
            patches = bands * width
            count = min(patches, max(1, round(share * patches)))
            indices.append(mask_indices((bands, width), count, self.config.masking, self.mask_generator).to(fbank.device))
        mask = torch.zeros(fbank.shape[0], bands * max(columns), dtype=torch.bool, device=fbank.device)
        for b, idx in enumerate(indices):
            mask[b, idx] = True
        tokens = self.encoder.forward_features(fbank, mask=mask, mask_embed=self.mask_embed, lengths=lengths)
        tokens = tokens[:, self.encoder.num_cls_tokens:, :]
        patches = self.encoder.patchify(fbank, lengths).detach()
        return [tokens[b, idx] for b, idx in enumerate(indices)], [patches[b, idx] for b, idx in enumerate(indices)]

    def _nce(self, tokens, targets) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(tokens, list):
            return tuple(_per_clip(info_nce, [self.cpredlayer(t) for t in tokens], targets))
        return info_nce(self.cpredlayer(tokens), targets)

    def _mse(self, tokens, targets) -> torch.Tensor:
        if isinstance(tokens, list):
            return _per_clip(patch_mse, [self.gpredlayer(t) for t in tokens], targets)[0]
        return patch_mse(self.gpredlayer(tokens), targets)

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
        fbank, lengths = _batch_fbank(batch)
        objective = self.config.objective
        out: dict[str, torch.Tensor] = {}
        if objective in ("joint", "nce"):
            tokens, targets = self._encode_masked(fbank, lengths)
            out["nce"], out["acc"] = self._nce(tokens, targets)
        if objective in ("joint", "mse"):
            if objective == "mse" or self.config.two_pass:
                tokens, targets = self._encode_masked(fbank, lengths)  # official: a second pass with a fresh mask
            out["mse"] = self._mse(tokens, targets)
        if objective == "joint":
            out["loss"] = out["nce"] + self.config.mse_weight * out["mse"]
        else:
            out["loss"] = out[objective]
        return out
