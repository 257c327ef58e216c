"""The SSAMBA/SSAST input pipeline as one object: waveform -> normalised log-mel fbank.

As in the official data loader: subtract the waveform's mean, Kaldi fbank (128 mel bins,
25 ms Hanning window, 10 ms shift, htk_compat, no energy, no dither), zero-pad or crop to
``target_length`` frames, then normalise with the dataset statistics as
``(x - mean) / (2 * std)``. Padding happens before normalisation, so padded frames hold
``-mean / (2 * std)``, not 0, exactly like the official pipeline.

``FeatureConfig`` is a plain dataclass so every checkpoint and run can record it
(``asdict`` / ``from_dict``); presets carry the published per-dataset statistics.
Training-time augmentation (SpecAugment, mixup) sits between :meth:`FeatureExtractor.fbank`
and :meth:`FeatureExtractor.normalize` and lives in ``ssamba.features.augment``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ssamba import config
from ssamba.audio import load_audio
from ssamba.errors import AudioError, ConfigError
from ssamba.features.fbank import as_float_tensor, kaldi_fbank_batch, samples_for_frames

# Normalisation statistics and input lengths from the SSAMBA/SSAST recipes.
PRESETS: dict[str, dict[str, Any]] = {
    "audioset": {"mean": -4.2677393, "std": 4.5689974, "target_length": 1024},
    "esc50": {"mean": -6.6268077, "std": 5.358466, "target_length": 512},
    "speechcommands": {"mean": -6.845978, "std": 5.5654526, "target_length": 128},
}
PRESET_ALIASES = {"pretrain": "audioset"}


@dataclass
class FeatureConfig:
    """How audio becomes model input. Defaults are the pretraining / AudioSet preset."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int | None = 1024  # frames (10 ms each); None keeps the natural length
    mean: float = -4.2677393
    std: float = 4.5689974

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ConfigError(f"sample_rate: must be a positive integer (Hz), got {self.sample_rate!r}")
        if not isinstance(self.num_mel_bins, int) or self.num_mel_bins <= 3:
            raise ConfigError(f"num_mel_bins: must be an integer > 3, got {self.num_mel_bins!r}")
        if self.target_length is not None and (not isinstance(self.target_length, int) or self.target_length <= 0):
            raise ConfigError(f"target_length: must be a positive integer or None, got {self.target_length!r}")
        if not np.isfinite(self.mean):
            raise ConfigError(f"mean: must be finite, got {self.mean!r}")
        if not (np.isfinite(self.std) and self.std > 0):
            raise ConfigError(f"std: must be finite and > 0, got {self.std!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "FeatureConfig":
        """Config for ``"audioset"`` (alias ``"pretrain"``), ``"esc50"`` or ``"speechcommands"``."""
        key = PRESET_ALIASES.get(name.lower(), name.lower())
        if key not in PRESETS:
            names = sorted([*PRESETS, *PRESET_ALIASES])
            raise ConfigError(f"feature preset: unknown name {name!r}, expected one of {names}")
        return cls.from_dict({**PRESETS[key], **overrides})

    @property
    def pad_value(self) -> float:
        """What a padded frame (fbank 0 before normalisation) holds after it: -mean / (2 std)."""
        return float(-self.mean / (2 * self.std))

    def asdict(self) -> dict[str, Any]:
        """JSON-ready dict; ``FeatureConfig.from_dict(c.asdict()) == c``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Build from a dict (e.g. a saved config.json section); unknown keys are an error."""
        return config.from_dict(cls, data, "features")


class FeatureExtractor:
    """Callable turning 1-D waveforms at ``config.sample_rate`` into normalised fbanks.

    ``extractor(wave) -> (target_length, num_mel_bins)``; ``extractor.batch(waves)`` for
    several at once; ``extractor.extract_file(path)`` loads and resamples first.
    """

    def __init__(self, config: FeatureConfig | str | None = None) -> None:
        if config is None:
            config = FeatureConfig()
        elif isinstance(config, str):
            config = FeatureConfig.preset(config)
        self.config = config

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.config})"

    def __call__(self, waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Normalised fbank ``(frames, bins)`` of one mono waveform ``(samples,)``."""
        wave = as_float_tensor(waveform, "waveform")
        if wave.dim() != 1:
            raise AudioError(f"waveform: expected a 1-D mono waveform, got shape {tuple(wave.shape)}")
        return self.normalize(self.fbank(wave[None])[0])

    def batch(self, waveforms: torch.Tensor | Sequence[torch.Tensor | np.ndarray]) -> torch.Tensor:
        """Normalised fbanks ``(B, frames, bins)`` of a ``(B, samples)`` tensor or a list of waves.

        Waves of different lengths are fine when ``target_length`` is set (each is padded or
        cropped); with ``target_length=None`` they must all have the same length.
        """
        if isinstance(waveforms, (torch.Tensor, np.ndarray)):
            waves = as_float_tensor(waveforms, "waveforms")
            if waves.dim() != 2:
                raise AudioError(f"waveforms: expected shape (batch, samples), got {tuple(waves.shape)}")
            return self.normalize(self.fbank(waves))
        items = [as_float_tensor(w, f"waveforms[{i}]") for i, w in enumerate(waveforms)]
        if not items:
            raise AudioError("waveforms: empty list")
        lengths = {w.shape[-1] for w in items}
        if len(lengths) == 1:
            return self.batch(torch.stack(items))
        if self.config.target_length is None:
            raise AudioError(
                f"waveforms: lengths differ ({min(lengths)}..{max(lengths)} samples) and target_length is None"
            )
        return torch.stack([self(w) for w in items])

    def extract_file(self, path: str | os.PathLike) -> torch.Tensor:
        """Load ``path`` (mono mix, resampled to ``config.sample_rate``) and extract features."""
        return self(load_audio(path, target_sr=self.config.sample_rate))

    def fbank(self, waves: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel ``(B, frames, bins)`` of ``(B, samples)``, padded/cropped.

        This is the point where the official recipes apply SpecAugment before normalising. As
        they do, the whole clip's mean is removed; but only the samples of the first
        ``target_length`` frames are framed, so a long recording (an hour) costs its waveform,
        not an hour of spectra.
        """
        mean = waves.mean(dim=-1, keepdim=True)
        if self.config.target_length is not None:
            waves = waves[..., :samples_for_frames(self.config.target_length, self.config.sample_rate)]
        waves = waves - mean
        features = kaldi_fbank_batch(
            waves, sample_rate=self.config.sample_rate, num_mel_bins=self.config.num_mel_bins,
            frame_length=25.0, frame_shift=10.0, window="hanning", htk_compat=True,
            use_energy=False, dither=0.0,
        )
        return pad_or_crop(features, self.config.target_length)

    def normalize(self, fbank: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / (2 * std)`` with the config's dataset statistics."""
        return (fbank - self.config.mean) / (2.0 * self.config.std)

    def denormalize(self, features: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize` (back to log-mel), e.g. to plot reconstructions."""
        return features * (2.0 * self.config.std) + self.config.mean


def pad_or_crop(fbank: torch.Tensor, target_length: int | None) -> torch.Tensor:
    """Zero-pad at the end or keep the first ``target_length`` frames (dim -2)."""
    if target_length is None:
        return fbank
    frames = fbank.shape[-2]
    if frames > target_length:
        return fbank[..., :target_length, :]
    if frames < target_length:
        return torch.nn.functional.pad(fbank, (0, 0, 0, target_length - frames))
    return fbank


def feature_config_for(model) -> FeatureConfig:
    """The input pipeline an encoder was trained with (recorded in its config)."""
    return feature_config_of(model.config.features)


def feature_config_of(spec) -> FeatureConfig:
    """An encoder config's ``features`` entry (a FeatureConfig, a preset name or a dict) as a FeatureConfig."""
    if isinstance(spec, FeatureConfig):
        return spec
    if isinstance(spec, str):
        return FeatureConfig.preset(spec)
    if isinstance(spec, dict):
        return FeatureConfig.from_dict(spec)
    raise ConfigError(f"encoder config features={spec!r}: expected a preset name or a dict")
