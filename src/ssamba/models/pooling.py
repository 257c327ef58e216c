"""Clip embeddings from tokens: the official mean, mean and standard deviation, and per-band means.

Pure tensor functions over tokens (B, n_cls + P, D) in the encoders' patch order (frequency-major);
with per-clip ``counts`` / ``columns`` (a mixed-length batch, valid tokens first) they pool each
clip's valid tokens only. ``ssamba.models.encoder.pool_tokens`` chooses among them for a model.
"""

from __future__ import annotations

import torch

from ssamba.errors import ConfigError
from ssamba.nn.lengths import valid_mask


def _patch_counts(tokens: torch.Tensor, num_cls_tokens: int, counts: torch.Tensor | None) -> torch.Tensor:
    """(B, P, 1) weights 1/count on each clip's valid patch tokens (all of them when ``counts`` is None)."""
    batch, size = tokens.shape[0], tokens.shape[1] - num_cls_tokens
    if counts is None:
        counts = torch.full((batch,), size, dtype=torch.long)
    counts = counts.to(tokens.device)
    valid = valid_mask(counts, size)
    return (valid.to(tokens.dtype) / counts[:, None].to(tokens.dtype))[..., None]


def mean_pool(tokens: torch.Tensor, num_cls_tokens: int, counts: torch.Tensor | None = None) -> torch.Tensor:
    """(B, D): mean of the non-CLS tokens (B, n_cls + P, D), the official clip embedding; with
    ``counts`` (B,) only each clip's first ``counts[b]`` patch tokens (the rest is padding)."""
    patches = tokens[:, num_cls_tokens:]
    if counts is None:
        return patches.mean(dim=1)
    weights = _patch_counts(tokens, num_cls_tokens, counts)
    return (torch.where(weights > 0, patches, 0.0) * weights).sum(dim=1)


def mean_std_pool(tokens: torch.Tensor, num_cls_tokens: int, counts: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2D): mean and standard deviation over the non-CLS tokens (B, n_cls + P, D), concatenated
    (with ``counts``, over each clip's valid patch tokens only, as ``mean_pool``).

    Richer than the official mean: it keeps the spread of the tokens (speaker and channel
    statistics), and is the demo's strongest probe. The variance has a floor of 1e-12 so the
    gradient stays finite when a head is fine-tuned through it."""
    patches = tokens[:, num_cls_tokens:]
    if counts is None:
        mean = patches.mean(dim=1)
        std = (patches - mean[:, None]).pow(2).mean(dim=1).add(1e-12).sqrt()
        return torch.cat([mean, std], dim=1)
    weights = _patch_counts(tokens, num_cls_tokens, counts)
    patches = torch.where(weights > 0, patches, 0.0)
    mean = (patches * weights).sum(dim=1)
    std = ((patches - mean[:, None]).pow(2) * weights).sum(dim=1).add(1e-12).sqrt()
    return torch.cat([mean, std], dim=1)


def band_pool(tokens: torch.Tensor, num_cls_tokens: int, num_bands: int,
              columns: torch.Tensor | None = None) -> torch.Tensor:
    """(B, bands * D): per frequency band, the mean over time of its tokens; bands concatenated,
    lowest first (the clip embedding of M2D / MSM-MAE for patch-based encoders).

    The official mean averages over frequency too, so it keeps the shape of a 16-bin patch but
    not where in the spectrum the energy sits; the spectral envelope (speaker, channel, timbre)
    survives here. Patch order is frequency-major, so the tokens reshape to (bands, time);
    with ``columns`` (B,) clip b's first bands * columns[b] tokens are its (bands, columns[b]) grid."""
    patches = tokens[:, num_cls_tokens:]
    batch, count, dim = patches.shape
    if columns is None:
        if count % num_bands:
            raise ConfigError(f"band pooling: {count} patch tokens do not split into {num_bands} frequency bands")
        return patches.reshape(batch, num_bands, count // num_bands, dim).mean(dim=2).flatten(1)
    columns = columns.to(tokens.device)
    position = torch.arange(count, device=tokens.device)[None, :]                     # (1, P)
    band = torch.where(position < num_bands * columns[:, None], position // columns[:, None], -1)
    weights = (band[..., None] == torch.arange(num_bands, device=tokens.device)).to(patches.dtype)
    weights = weights / columns[:, None, None].to(patches.dtype)                      # (B, P, bands)
    patches = torch.where(band[..., None] >= 0, patches, 0.0)
    return torch.einsum("bpk,bpd->bkd", weights, patches).flatten(1)
