"""Clip embeddings for the probes: frozen encoders and the log-mel statistics baseline.

Encoders see each clip as ``ssamba.inference.Embedder.scene`` does (the official embedding):
clips shorter than the encoder's window (``input_tdim`` frames) are padded, longer ones are cut
into windows with 50 % overlap, and a clip's embedding is the mean over its windows of the mean
of the non-CLS tokens. The same pass also gives the **mean‖std** pooling (mean and standard
deviation of the non-CLS tokens, concatenated), which the demo reports next to the official mean.
Working from cached fbanks (not waveforms) lets one decode serve every model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

POOLINGS = ("mean", "mean_std")


def clip_windows(fbank: np.ndarray, window: int, hop: int, pad_value: float) -> list[torch.Tensor]:
    """Windows of `window` frames every `hop` frames covering the whole clip (the last padded)."""
    from ssamba.demo.features import pad_to

    frames = len(fbank)
    steps = 0 if frames <= window else math.ceil((frames - window) / hop)
    padded = pad_to(fbank, window + steps * hop, pad_value)
    return [padded[i * hop:i * hop + window] for i in range(steps + 1)]


@torch.inference_mode()
def encoder_embeddings(model: torch.nn.Module, fbanks: Sequence[np.ndarray], pad_value: float,
                       batch_size: int = 32) -> dict[str, np.ndarray]:
    """{"mean": (N, D), "mean_std": (N, 2D)} for each clip's fbank, from one encoder pass."""
    model.eval()
    cfg = model.config
    window = cfg.input_tdim
    hop = max(cfg.tstride, max(cfg.tstride, window // 2) // cfg.tstride * cfg.tstride)
    windows, owner = [], []
    for i, fbank in enumerate(fbanks):
        pieces = clip_windows(fbank, window, hop, pad_value)
        windows.extend(pieces)
        owner.extend([i] * len(pieces))
    pooled = []
    for start in range(0, len(windows), batch_size):
        tokens = model.forward_features(torch.stack(windows[start:start + batch_size]))
        patches = tokens[:, model.num_cls_tokens:].float()
        pooled.append(torch.cat([patches.mean(dim=1), patches.std(dim=1, unbiased=False)], dim=1))
    per_window = torch.cat(pooled)
    owner_t = torch.tensor(owner)
    sums = torch.zeros(len(fbanks), per_window.shape[1]).index_add_(0, owner_t, per_window)
    counts = torch.bincount(owner_t, minlength=len(fbanks)).clamp_min(1).unsqueeze(1)
    both = (sums / counts).numpy()
    dim = per_window.shape[1] // 2
    return {"mean": both[:, :dim].copy(), "mean_std": both}


def logmel_statistics(fbanks: Sequence[np.ndarray]) -> np.ndarray:
    """The baseline: per clip, mean and standard deviation over time of each mel bin of the
    normalised fbank, concatenated -> (N, 2 * bins)."""
    rows = []
    for fbank in fbanks:
        x = np.asarray(fbank, dtype=np.float32)
        rows.append(np.concatenate([x.mean(axis=0), x.std(axis=0)]))
    return np.stack(rows)
