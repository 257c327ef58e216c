"""ssamba.audio: load audio files or arrays as float32 mono tensors at 16 kHz, with clear errors."""

from ssamba.audio.io import AudioInfo, audio_info, load_audio, resample

__all__ = ["AudioInfo", "audio_info", "load_audio", "resample"]
