"""ssamba.features: Kaldi-compatible fbank and the SSAMBA input pipeline (FeatureConfig/FeatureExtractor)."""

from ssamba.features.extractor import PRESETS, FeatureConfig, FeatureExtractor, pad_or_crop
from ssamba.features.fbank import frame_window, kaldi_fbank, kaldi_fbank_batch, mel_banks, num_frames

__all__ = [
    "PRESETS",
    "FeatureConfig",
    "FeatureExtractor",
    "frame_window",
    "kaldi_fbank",
    "kaldi_fbank_batch",
    "mel_banks",
    "num_frames",
    "pad_or_crop",
]
