"""Scoring whole utterances in fixed-length chunks (the official VoxCeleb1 / IEMOCAP evaluation feeds
s3prl the whole utterance, which the upstream reads in 10 s windows).

The fbank of the whole utterance is computed once, cut into ``chunk_frames``-frame chunks (the last
one zero-padded before normalisation, as the official pipeline pads a short clip), and each chunk
is encoded on its own. The utterance embedding is the mean of the chunk embeddings weighted by
each chunk's real frames, so a short tail counts for what it holds: the mean over the
utterance's time steps, up to the padded tail's own tokens.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssamba.data.classification import multi_hot
from ssamba.data.manifests import AudioItem
from ssamba.features.extractor import FeatureConfig, FeatureExtractor, pad_or_crop


def split_chunks(fbank: torch.Tensor, chunk_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, F) un-normalised fbank -> (chunks (n, chunk_frames, F) zero-padded, real frames per chunk (n,))."""
    count = max(1, math.ceil(fbank.shape[0] / chunk_frames))
    chunks = [pad_or_crop(fbank[i * chunk_frames:(i + 1) * chunk_frames], chunk_frames) for i in range(count)]
    frames = [min(chunk_frames, fbank.shape[0] - i * chunk_frames) for i in range(count)]
    return torch.stack(chunks), torch.tensor([max(1, f) for f in frames], dtype=torch.float32)


class UtteranceChunks(Dataset):
    """Items as (chunks (n, chunk_frames, F) normalised, frames (n,), target (C,)); chunk_frames is
    the feature config's ``target_length`` (1024 = 10.24 s for the "audioset" preset)."""

    def __init__(self, items: Sequence[AudioItem], num_classes: int, features: FeatureConfig) -> None:
        if not features.target_length:
            raise ValueError("UtteranceChunks: the feature config needs a target_length (the chunk length)")
        self.items, self.num_classes = list(items), num_classes
        self.chunk_frames = features.target_length
        self.extractor = FeatureExtractor(FeatureConfig.from_dict({**features.asdict(), "target_length": None}))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from ssamba.audio import load_audio

        item = self.items[index]
        wave = item.audio() if item.audio is not None else \
            load_audio(item.path, target_sr=self.extractor.config.sample_rate)
        chunks, frames = split_chunks(self.extractor.fbank(wave[None])[0], self.chunk_frames)
        return self.extractor.normalize(chunks).float(), frames, multi_hot(item.labels, self.num_classes)


@torch.no_grad()
def predict_chunked(task, dataset: UtteranceChunks, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, C), targets (N, C)) of a FinetuneTask over whole utterances, in eval mode;
    ``batch_size`` bounds the chunks encoded at once."""
    was_training = task.training
    task.eval()
    device = next(task.parameters()).device
    scores, targets = [], []
    for index in range(len(dataset)):
        chunks, frames, target = dataset[index]
        parts = [task.embed(chunks[i:i + batch_size].to(device)) for i in range(0, len(chunks), batch_size)]
        weights = (frames / frames.sum()).to(device)
        if isinstance(parts[0], list):  # per-layer embeddings (weighted layer sum)
            embedding = [(torch.cat([p[k] for p in parts]) * weights[:, None]).sum(0, keepdim=True)
                         for k in range(len(parts[0]))]
        else:
            embedding = (torch.cat(parts) * weights[:, None]).sum(0, keepdim=True)
        scores.append(task.scores(task.head(embedding)).float().cpu())
        targets.append(target[None])
    task.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()
