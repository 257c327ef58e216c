"""Clip embeddings for the probes: frozen encoders and the log-mel statistics baseline.

Encoders see each clip exactly as ``ssamba.inference.Embedder`` does (the official embedding:
windows of ``input_tdim`` frames with 50 % overlap, mean of the non-CLS tokens, averaged over
windows), from the demo's cached fbanks so one decode serves every model. The same pass also
gives the **mean‖std** and **bands** poolings, which the demo reports next to the official mean.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ssamba.inference import Embedder


def encoder_embeddings(model: torch.nn.Module, fbanks: Sequence[np.ndarray],
                       batch_size: int = 32) -> dict[str, np.ndarray]:
    """{"mean": (N, D), "mean_std": (N, 2D), "bands": (N, bands * D), "layer_means": (N, layers, D)}
    for each clip's normalised fbank, all from one encoder pass (the last layer's mean is "mean")."""
    clips = [torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in fbanks]
    pooled = Embedder(model, batch_size=batch_size).scene_from_fbanks(clips, pooling=["per_layer", "bands"])
    every = pooled["per_layer"].numpy()
    dim = every.shape[2] // 2
    return {"mean": every[:, -1, :dim].copy(), "mean_std": every[:, -1].copy(), "bands": pooled["bands"].numpy(),
            "layer_means": every[:, :, :dim]}


def logmel_statistics(fbanks: Sequence[np.ndarray]) -> np.ndarray:
    """The baseline: per clip, mean and standard deviation over time of each mel bin of the
    normalised fbank, concatenated -> (N, 2 * bins)."""
    rows = []
    for fbank in fbanks:
        x = np.asarray(fbank, dtype=np.float32)
        rows.append(np.concatenate([x.mean(axis=0), x.std(axis=0)]))
    return np.stack(rows)
