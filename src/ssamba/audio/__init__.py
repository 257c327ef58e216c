"""ssamba.audio: load audio files or arrays as float32 mono tensors at 16 kHz, with clear errors."""

from ssamba.audio.io import AUDIO_EXTENSIONS, AudioInfo, audio_info, list_audio_files, load_audio, read_samples, resample

__all__ = ["AUDIO_EXTENSIONS", "AudioInfo", "audio_info", "list_audio_files", "load_audio", "read_samples", "resample"]
