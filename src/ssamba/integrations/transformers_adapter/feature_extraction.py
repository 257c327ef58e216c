"""``SsambaFeatureExtractor``: raw audio -> the checkpoint's normalised log-mel fbank, batched.

transformers 5.25 has no audio-processor base class yet: the ``audio_processor`` slot of its
processors holds a ``FeatureExtractionMixin`` loaded through ``AutoFeatureExtractor``, and audio
models ship a ``SequenceFeatureExtractor``. So this is one, like ``ASTFeatureExtractor``, which
serves both: the same ``__call__``, ``save_pretrained`` / ``from_pretrained`` and
``preprocessor_config.json``. The
numbers are ssamba's own (``ssamba.features.FeatureExtractor``: Kaldi fbank without torchaudio,
the checkpoint's mean/std): with the default ``padding="max_length"`` each clip is zero-padded or
cropped to the encoder's ``input_tdim`` frames before normalising, exactly as the recipes pad;
``padding="longest"`` pads to the longest clip of the batch instead. ``attention_mask`` marks the
real frames (1) and the padding (0).

A ssamba checkpoint directory has no ``preprocessor_config.json``: ``from_pretrained`` then builds
the extractor from its ``config.json`` (the encoder's ``features`` and ``input_tdim``), and a
fine-tuned run's ``task.json`` names the preset it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import FEATURE_EXTRACTOR_NAME, cached_file

from ssamba.audio import load_audio
from ssamba.errors import AudioError, CheckpointError, ConfigError
from ssamba.features import FeatureConfig, FeatureExtractor
from ssamba.features.extractor import feature_config_of
from ssamba.features.fbank import num_frames
from ssamba.integrations.transformers_adapter.addresses import hub_arguments
from ssamba.models.config import EncoderConfig

PADDINGS = ("max_length", "longest")


class SsambaFeatureExtractor(SequenceFeatureExtractor):
    """Raw waveforms -> ``input_values`` (B, frames, num_mel_bins) float32 and ``attention_mask`` (B, frames).

    ``max_length``: frames per clip (the encoder's ``input_tdim``); ``mean``/``std``: the
    normalisation ``(x - mean) / (2 std)`` of the checkpoint's recipe. Audio at another
    ``sampling_rate`` is resampled with ssamba's loader (polyphase), multi-channel arrays are mixed
    to mono as ``ssamba.audio.load_audio`` does.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(self, feature_size: int = 128, sampling_rate: int = 16000, max_length: int = 1024,
                 mean: float = -4.2677393, std: float = 4.5689974, return_attention_mask: bool = True,
                 **kwargs) -> None:
        self.max_length = int(max_length)
        self.mean, self.std = float(mean), float(std)
        kwargs.pop("padding_value", None)   # derived: what a padded frame holds after normalising
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate,
                         padding_value=(0.0 - self.mean) / (2 * self.std),
                         return_attention_mask=return_attention_mask, **kwargs)
        self.features = FeatureConfig(sample_rate=sampling_rate, num_mel_bins=feature_size,
                                      target_length=self.max_length, mean=self.mean, std=self.std)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("features", None)   # rebuilt from the fields above
        return out

    @classmethod
    def from_feature_config(cls, features: FeatureConfig, max_length: int) -> "SsambaFeatureExtractor":
        """The extractor of a ssamba input pipeline, padding/cropping to ``max_length`` frames."""
        return cls(feature_size=features.num_mel_bins, sampling_rate=features.sample_rate, max_length=max_length,
                   mean=features.mean, std=features.std)

    @classmethod
    def from_encoder_config(cls, config: EncoderConfig, preset: str | None = None) -> "SsambaFeatureExtractor":
        """The extractor an encoder expects: its ``features`` (or the named ``preset``), ``input_tdim`` frames."""
        features = FeatureConfig.preset(preset) if preset else feature_config_of(config.features)
        return cls.from_feature_config(features, config.input_tdim)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "SsambaFeatureExtractor":
        """``preprocessor_config.json`` when the directory/repo has one, else its ssamba ``config.json``
        (``hf://`` addresses as the models take them)."""
        pretrained_model_name_or_path, kwargs = hub_arguments(pretrained_model_name_or_path, kwargs)
        source = str(pretrained_model_name_or_path)
        hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs}
        if cached_file(source, FEATURE_EXTRACTOR_NAME, _raise_exceptions_for_missing_entries=False, **hub):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls.from_checkpoint(source, **hub)

    @classmethod
    def from_checkpoint(cls, source: str, **hub) -> "SsambaFeatureExtractor":
        """From a ssamba checkpoint's ``config.json`` (and a fine-tuned run's ``task.json`` preset)."""
        config_path = cached_file(source, "config.json", _raise_exceptions_for_missing_entries=False, **hub)
        if config_path is None:
            raise CheckpointError(f"{source}: no {FEATURE_EXTRACTOR_NAME} and no config.json")
        try:
            encoder = EncoderConfig.from_dict(json.loads(Path(config_path).read_text())["encoder"])
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"{config_path}: not a ssamba encoder config ({exc})") from None
        task_path = cached_file(source, "task.json", _raise_exceptions_for_missing_entries=False, **hub)
        preset = json.loads(Path(task_path).read_text()).get("feature_preset") if task_path else None
        return cls.from_encoder_config(encoder, preset)

    def __call__(self, raw_speech, sampling_rate: int | None = None, padding: str | bool = "max_length",
                 max_length: int | None = None, return_attention_mask: bool | None = None,
                 return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """Features of one waveform (1-D) or a batch (a list of 1-D arrays, or a 2-D (batch, samples)
        array). ``padding``: ``"max_length"`` (default; to ``max_length`` frames, longer clips
        cropped, as the recipes) or ``"longest"``/``True`` (to the batch's longest clip)."""
        padding = "longest" if padding is True else padding
        if padding not in PADDINGS:
            raise ConfigError(f"padding={padding!r}: must be one of {', '.join(PADDINGS)}")
        rate = self.sampling_rate if sampling_rate is None else sampling_rate
        waves = [load_audio(w, sample_rate=rate, target_sr=self.sampling_rate) for w in _as_list(raw_speech)]
        frames = [num_frames(len(w), self.sampling_rate) for w in waves]
        limit = max_length or self.max_length
        target = limit if padding == "max_length" else max(frames)
        extractor = FeatureExtractor(dataclasses.replace(self.features, target_length=target))
        values = torch.stack([extractor(w) for w in waves])
        mask = torch.zeros(len(waves), target, dtype=torch.int32)
        for row, count in enumerate(frames):
            mask[row, :min(count, target)] = 1
        data = {"input_values": values}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["attention_mask"] = mask
        return BatchFeature({k: v.numpy() for k, v in data.items()}, tensor_type=return_tensors)


def _as_list(raw_speech) -> list:
    """A batch of 1-D waveforms from one waveform, a list of them or a 2-D (batch, samples) array."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        if raw_speech.ndim == 1:
            return [raw_speech]
        if raw_speech.ndim == 2:
            return list(raw_speech)
        raise AudioError(f"raw_speech: expected 1-D or (batch, samples), got shape {tuple(raw_speech.shape)}")
    if isinstance(raw_speech, (list, tuple)):
        if raw_speech and isinstance(raw_speech[0], (int, float)):
            return [np.asarray(raw_speech, dtype=np.float32)]
        items = [np.asarray(w, dtype=np.float32) if isinstance(w, (list, tuple)) else w for w in raw_speech]
        if not items:
            raise AudioError("raw_speech: empty batch")
        return items
    raise AudioError(f"raw_speech: expected an array or a list of arrays, got {type(raw_speech).__name__}")
