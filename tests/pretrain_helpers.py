"""Shared helpers for the pretraining/trainer tests: a tiny encoder and synthetic fbank data.

``tiny_encoder()`` returns the real ``ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32)``
when the model package provides it, else a small stand-in that follows the AudioEncoder
contract of docs/DEVELOPING.md (16x16 patches, frequency-major order, CLS tokens, mask_embed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StandInConfig:
    embed_dim: int = 32
    num_mel_bins: int = 128
    patch: int = 16
    num_cls_tokens: int = 1


class StandInEncoder(nn.Module):
    """Patch embedding + one transformer layer; same contract as ssamba's AudioEncoder."""

    def __init__(self, config: StandInConfig | None = None) -> None:
        super().__init__()
        self.config = config or StandInConfig()
        c = self.config
        self.num_cls_tokens = c.num_cls_tokens
        self.proj = nn.Conv2d(1, c.embed_dim, kernel_size=c.patch, stride=c.patch)
        self.cls = nn.Parameter(torch.zeros(1, c.num_cls_tokens, c.embed_dim))
        self.pos = nn.Parameter(torch.randn(1, 512, c.embed_dim) * 0.02)
        self.layer = nn.TransformerEncoderLayer(c.embed_dim, 2, 2 * c.embed_dim, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(c.embed_dim)

    def patch_grid(self, frames: int) -> tuple[int, int]:
        return self.config.num_mel_bins // self.config.patch, frames // self.config.patch

    def patchify(self, fbank: torch.Tensor) -> torch.Tensor:
        p = self.config.patch
        x = fbank.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        return nn.functional.unfold(x, kernel_size=p, stride=p).transpose(1, 2)

    def forward_features(self, fbank, mask=None, mask_embed=None):
        x = self.proj(fbank.transpose(1, 2).unsqueeze(1)).flatten(2).transpose(1, 2)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), mask_embed.to(x.dtype).expand_as(x), x)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos[:, :x.shape[1]]
        return self.norm(self.layer(x))

    def pool(self, tokens):
        return tokens[:, self.num_cls_tokens:].mean(1)

    def forward(self, fbank):
        return self.pool(self.forward_features(fbank))


def real_encoder_available() -> bool:
    try:
        import ssamba
        return hasattr(ssamba, "create_model")
    except ImportError:
        return False


def tiny_encoder(kind: str = "ssamba", seed: int = 0) -> nn.Module:
    """A depth-2, width-32 encoder (real if available, else the stand-in), deterministically initialised."""
    torch.manual_seed(seed)
    if real_encoder_available():
        import ssamba
        return ssamba.create_model(f"{kind}_tiny", depth=2, embed_dim=32)
    return StandInEncoder()


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
