"""HEAR 2021 API (https://hearbenchmark.com/hear-api.html) for SSAMBA / SSAST encoders.

    model = load_model("path/to/checkpoint_dir_or_official.pth")   # or "official:ssamba_tiny_400", "hf://OWNER/REPO"
    scene = get_scene_embeddings(audio, model)             # (n, D)
    emb, ts = get_timestamp_embeddings(audio, model)       # (n, T, D), (n, T) ms

``audio`` is a float tensor (n, samples) at ``model.sample_rate`` (16 kHz). Embeddings follow
``ssamba.inference.Embedder``: the scene embedding is the mean of the non-CLS tokens after the
final norm, averaged over 50 %-overlapping windows for audio longer than the encoder's window;
timestamp embeddings are the patch grid's time columns (averaged over frequency), one every
``model.hop_ms`` ms (160 ms at the pretraining geometry), stamped with their centre times.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ssamba.audio import load_audio
from ssamba.inference import Embedder, as_encoder
from ssamba.models.encoder import pooled_dim


class HearModel(torch.nn.Module):
    """An encoder plus its input pipeline, with the attributes the HEAR API asks for."""

    def __init__(self, encoder: torch.nn.Module, device: str | None = None, batch_size: int = 8,
                 layers: int | Sequence[int] | str | None = None, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.embedder = Embedder(encoder, device=device, batch_size=batch_size, layers=layers)
        self.pooling = pooling
        self.sample_rate = self.embedder.sample_rate
        self.scene_embedding_size = pooled_dim(encoder, pooling)
        self.timestamp_embedding_size = encoder.embed_dim
        self.hop_ms = self.embedder.hop_ms


def load_model(model_file_path: str = "", device: str | None = None,
               layers: int | Sequence[int] | str | None = None, pooling: str = "mean") -> HearModel:
    """Load a ssamba checkpoint dir, an official ``.pth`` or a Hub address (``ssamba.load``); "" gives a
    random-init SSAMBA-tiny.
    ``layers``: which layer's tokens to pool (see ``ssamba.inference.Embedder``; default the last);
    ``pooling`` of the scene embedding: "mean" (official), "mean_std" or "bands"."""
    if model_file_path:
        encoder = as_encoder(model_file_path)
    else:
        from ssamba.models import create_model
        warnings.warn("hear.load_model(''): no checkpoint given, using a randomly initialised "
                      "ssamba_tiny; its embeddings are not pretrained", stacklevel=2)
        encoder = create_model("ssamba_tiny")
    return HearModel(encoder, device=device, layers=layers, pooling=pooling)


def _rows(audio: torch.Tensor, sample_rate: int) -> list[torch.Tensor]:
    if audio.dim() != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
    return [load_audio(row.float().cpu(), sample_rate=sample_rate)
            for row in audio]


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n, scene_embedding_size) float32 embeddings of n sounds."""
    return model.embedder.scene(_rows(audio, model.sample_rate), model.pooling)


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """((n, T, D) embeddings, (n, T) centre times in ms); sounds share a length, so share T."""
    results = model.embedder.timestamps(_rows(audio, model.sample_rate))
    return (torch.stack([emb for emb, _ in results]), torch.stack([ts for _, ts in results]))
