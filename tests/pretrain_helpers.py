"""Shared helpers for the pretraining/trainer tests: a tiny encoder and synthetic fbank data."""

from __future__ import annotations

import torch
from torch import nn

import ssamba


def tiny_encoder(kind: str = "ssamba", seed: int = 0) -> nn.Module:
    """A depth-2, width-32 real encoder, deterministically initialised."""
    torch.manual_seed(seed)
    return ssamba.create_model(f"{kind}_tiny", depth=2, embed_dim=32)


def synthetic_fbank(n: int, frames: int = 128, seed: int = 0) -> torch.Tensor:
    """Structured fake fbank clips (harmonic stripes + noise) so the objective has something to learn."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).float()[:, None]
    f = torch.arange(128).float()[None, :]
    clips = []
    for _ in range(n):
        base = torch.randint(4, 20, (1,), generator=g).item()
        rate = torch.rand(1, generator=g).item() * 0.2
        x = torch.sin(f / base + rate * t) + 0.3 * torch.randn(frames, 128, generator=g)
        clips.append(x)
    return torch.stack(clips)


class SyntheticFbankDataset(torch.utils.data.Dataset):
    """Map-style dataset over synthetic fbank clips; takes ``(index, item_seed)`` keys and random-crops."""

    def __init__(self, n: int = 32, frames: int = 96, crop: int = 64, seed: int = 0) -> None:
        self.clips = synthetic_fbank(n, frames, seed)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key):
        index, item_seed = key if isinstance(key, tuple) else (key, 0)
        g = torch.Generator().manual_seed(int(item_seed))
        start = int(torch.randint(self.clips.shape[1] - self.crop + 1, (1,), generator=g))
        return {"fbank": self.clips[index, start:start + self.crop]}
