"""Load audio from a file or an in-memory array as float32 mono at a target sample rate.

Everything the models see goes through :func:`load_audio`, so this is where bad input is
caught: a missing or non-audio file, an empty or silent-length clip, NaN/Inf samples, a
clip too short for one 25 ms analysis frame, or a nonsensical sample rate all raise
:class:`ssamba.errors.AudioError` with a one-line message naming the file (or argument).

Channel layout rule for in-memory input (files are always read by soundfile):
  * 1-D input is mono.
  * a 2-D **numpy** array is ``(samples, channels)``, as ``soundfile.read`` returns it;
  * a 2-D **torch tensor** is ``(channels, samples)``, as torchaudio returns it.
Channels are averaged to mono. If the channel axis is longer than the sample axis the
array is almost certainly transposed, so that raises instead of silently mixing
thousands of "channels".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from ssamba.errors import AudioError

AudioSource = Union[str, os.PathLike, np.ndarray, torch.Tensor]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")


def list_audio_files(directory: str | os.PathLike) -> list[Path]:
    """Audio files under ``directory`` (recursive, by extension, hidden files ignored), sorted by path."""
    return sorted(p for p in Path(directory).rglob("*")
                  if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))

#: The shortest clip accepted: one Kaldi analysis frame of this many milliseconds.
MIN_FRAME_MS = 25.0


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file, read without decoding the samples."""

    path: str
    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path`` (sample rate, frame count, channels) without decoding it.

    Raises AudioError if the file is missing or not a format libsndfile understands.
    """
    name = _check_path(path)
    try:
        info = sf.info(name)
    except Exception as exc:  # libsndfile raises a few different types
        raise AudioError(f"{name}: not a readable audio file ({_short(exc)})") from None
    return AudioInfo(name, int(info.samplerate), int(info.frames), int(info.channels), info.format, info.subtype)


def load_audio(
    source: AudioSource,
    sample_rate: int | None = None,
    target_sr: int = 16000,
    pad_short: bool = False,
) -> torch.Tensor:
    """Return ``source`` as a float32 mono 1-D CPU tensor sampled at ``target_sr`` Hz.

    ``source`` is a path (wav, flac, ogg, mp3, ... anything libsndfile reads) or a numpy
    array / torch tensor; arrays need their ``sample_rate``. For a path, ``sample_rate`` may
    be given as a check and must then equal the file's rate. Float input is used as is
    (expected in [-1, 1]); int16/int32 PCM arrays are scaled to [-1, 1]. Channels are mixed
    to mono (see the module docstring for the layout rule), then resampled with a
    polyphase filter (``scipy.signal.resample_poly`` with the reduced ratio
    ``target_sr/g : sr/g``, ``g = gcd``). Audio shorter than one 25 ms frame is an error,
    or with ``pad_short`` zero-padded to one frame (a click in a pretraining corpus is data).
    """
    target_sr = _check_rate(target_sr, "target_sr")
    if isinstance(source, (str, os.PathLike)):
        name = _check_path(source)
        samples, sr = read_samples(name, name)
        if sample_rate is not None and _check_rate(sample_rate, "sample_rate") != sr:
            raise AudioError(f"{name}: file is sampled at {sr} Hz but sample_rate={sample_rate} was given")
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        name = f"<{type(source).__name__} of shape {tuple(source.shape)}>"
        if sample_rate is None:
            raise AudioError(f"{name}: an in-memory array needs its sample_rate")
        sr = _check_rate(sample_rate, "sample_rate")
        samples = _array_to_mono(source, name)
    else:
        raise AudioError(f"source: expected a path, numpy array or torch tensor, got {type(source).__name__}")

    _validate(samples, name)
    if sr != target_sr:
        samples = resample(samples, sr, target_sr)
    min_samples = int(target_sr * MIN_FRAME_MS / 1000)
    if samples.shape[0] < min_samples and pad_short:
        samples = np.pad(samples, (0, min_samples - samples.shape[0]))
    if samples.shape[0] < min_samples:
        raise AudioError(
            f"{name}: {samples.shape[0]} samples at {target_sr} Hz is shorter than one "
            f"{MIN_FRAME_MS:g} ms frame ({min_samples} samples)"
        )
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal (float64 internally, float32 out).

    Output length is ``ceil(len * target_sr / orig_sr)``. This is the exact call the parity
    fixtures use, so features of resampled audio are reproducible.
    """
    g = math.gcd(orig_sr, target_sr)
    out = resample_poly(np.asarray(samples, dtype=np.float64), target_sr // g, orig_sr // g)
    return out.astype(np.float32)


def _check_path(path: str | os.PathLike) -> str:
    name = os.fspath(path)
    p = Path(name)
    if not p.exists():
        raise AudioError(f"{name}: no such file")
    if p.is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{name}: empty file (0 bytes)")
    return name


def read_samples(source, name: str) -> tuple[np.ndarray, int]:
    """Decode ``source`` (a file name, or a binary file object such as a dataset row's bytes) to
    (mono float32 samples, sample rate); errors are AudioErrors naming ``name``."""
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{name}: not a readable audio file ({_short(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples (zero-length audio)")
    if sr <= 0:
        raise AudioError(f"{name}: header gives sample rate {sr} Hz")
    if data.shape[1] == 1:  # mono: the samples as read, no copy (a 1-hour file costs its 230 MB once)
        return data[:, 0], int(sr)
    return data.mean(axis=1, dtype=np.float64).astype(np.float32), int(sr)


def _array_to_mono(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Convert an in-memory array to mono float32 following the module's layout rule."""
    is_tensor = isinstance(array, torch.Tensor)
    data = array.detach().cpu().numpy() if is_tensor else np.asarray(array)
    data = _to_float(data, name)
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(f"{name}: expected 1-D or 2-D audio, got {data.ndim} dimensions")
    if is_tensor:
        data = data.T  # tensors are (channels, samples); make them (samples, channels)
    samples, channels = data.shape
    if channels > samples:
        layout = "(channels, samples)" if is_tensor else "(samples, channels)"
        raise AudioError(
            f"{name}: read as {layout} this has {channels} channels of {samples} samples; "
            "the array looks transposed"
        )
    return data.mean(axis=1, dtype=np.float64).astype(np.float32)


def _to_float(data: np.ndarray, name: str) -> np.ndarray:
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    if data.dtype == np.int32:
        return (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32, copy=False)
    raise AudioError(f"{name}: unsupported sample type {data.dtype} (use float, int16 or int32)")


def _validate(samples: np.ndarray, name: str) -> None:
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples (zero-length audio)")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int((~finite).sum())
        raise AudioError(f"{name}: {bad} samples are NaN or Inf")


def _check_rate(rate: object, what: str) -> int:
    """Sample rates must be positive whole numbers of Hz (polyphase needs integer ratios)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise AudioError(f"{what}: expected a number of Hz, got {type(rate).__name__}")
    if not math.isfinite(rate) or rate <= 0:
        raise AudioError(f"{what}: sample rate must be > 0 Hz, got {rate}")
    if int(rate) != rate:
        raise AudioError(f"{what}: sample rate must be a whole number of Hz, got {rate}")
    return int(rate)


def _short(exc: Exception) -> str:
    """First line of an exception message, so AudioError stays one line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
