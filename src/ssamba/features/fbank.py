"""Kaldi-compatible log-mel filterbank features in pure torch.

SSAMBA and SSAST were trained on ``torchaudio.compliance.kaldi.fbank`` features, so the
checkpoints only make sense with numerically the same input. This module reimplements
those semantics (verified against fixtures produced by torchaudio 2.11's ``kaldi.py``,
see tests/test_fbank.py) without depending on torchaudio:

  frames of ``frame_length`` ms every ``frame_shift`` ms (``snip_edges``: only frames that
  fit; otherwise Kaldi's reflected edges) -> optional dither -> per-frame DC removal ->
  raw log energy -> pre-emphasis ``x[j] - c*x[j-1]`` (``x[-1] := x[0]``) -> window ->
  zero-pad to the next power of two -> |rFFT|^2 -> triangular mel filters (mel =
  1127 ln(1 + f/700), ``low_freq`` 20 Hz to ``high_freq`` (<= 0 means Nyquist + value),
  Nyquist bin excluded) -> log with a floor of float32 eps.

Defaults are the SSAMBA pipeline's (128 bins, Hanning window, htk_compat, no energy,
no dither); torchaudio's own defaults differ (23 bins, Povey window).

Mel filter banks and windows are cached per (settings, device, dtype); the cached tensors
are shared, so never modify them in place.
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ssamba.errors import AudioError, ConfigError

WINDOWS = ("hanning", "hamming", "povey", "rectangular", "blackman")

#: Floor applied before every log, as Kaldi (std::numeric_limits<float>::epsilon()).
LOG_FLOOR = float(torch.finfo(torch.float32).eps)

_BLOCK_FRAMES = 2048


def kaldi_fbank(
    waveform: torch.Tensor | np.ndarray,
    sample_rate: float = 16000,
    num_mel_bins: int = 128,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    window: str = "hanning",
    htk_compat: bool = True,
    use_energy: bool = False,
    dither: float = 0.0,
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    raw_energy: bool = True,
    energy_floor: float = 1.0,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_log_fbank: bool = True,
    use_power: bool = True,
    subtract_mean: bool = False,
    blackman_coeff: float = 0.42,
) -> torch.Tensor:
    """Filterbank of one waveform: ``(samples,)`` or ``(1, samples)`` -> ``(frames, bins)``.

    ``bins`` is ``num_mel_bins`` (+1 energy column when ``use_energy``: last with
    ``htk_compat``, first otherwise). With ``snip_edges`` there are
    ``1 + (samples - frame) // shift`` frames. The waveform must be floating point,
    already mono, sampled at ``sample_rate``; it is processed in its own dtype and device.
    Options mirror ``torchaudio.compliance.kaldi.fbank`` (``window`` is its
    ``window_type``, ``preemphasis`` its ``preemphasis_coefficient``).
    """
    waves = as_float_tensor(waveform, "waveform")
    if waves.dim() == 2 and waves.shape[0] == 1:
        waves = waves[0]
    if waves.dim() != 1:
        raise AudioError(
            f"waveform: expected shape (samples,) or (1, samples), got {tuple(waves.shape)}; mix to mono first"
        )
    options = {key: value for key, value in locals().items() if key in _DEFAULTS}
    return _fbank(waves.unsqueeze(0), "waveform", **options)[0]


def kaldi_fbank_batch(waves: torch.Tensor | np.ndarray, **options: Any) -> torch.Tensor:
    """Filterbanks of equal-length waveforms ``(batch, samples)`` -> ``(batch, frames, bins)``.

    Takes the same keyword options as :func:`kaldi_fbank` and gives the same result as
    calling it on each row (dither aside, which draws different noise), in one pass.
    """
    waves = as_float_tensor(waves, "waves")
    if waves.dim() != 2 or waves.shape[0] == 0:
        raise AudioError(f"waves: expected shape (batch, samples) with batch >= 1, got {tuple(waves.shape)}")
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise ConfigError(f"kaldi_fbank_batch: unknown option(s) {sorted(unknown)}")
    return _fbank(waves, "waves", **{**_DEFAULTS, **options})


def mel_banks(
    num_mel_bins: int,
    fft_size: int,
    sample_rate: float,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Kaldi triangular mel filters as a ``(fft_size // 2 + 1, num_mel_bins)`` matrix.

    Rows are rFFT bins; the Nyquist row is zero, as in Kaldi. Cached; do not modify.
    """
    return _mel_banks(num_mel_bins, fft_size, float(sample_rate), float(low_freq), float(high_freq),
                      torch.device(device), dtype)


def frame_window(
    window: str, size: int, blackman_coeff: float = 0.42,
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Kaldi analysis window of ``size`` samples (symmetric). Cached; do not modify."""
    return _window(window, size, float(blackman_coeff), torch.device(device), dtype)


def samples_for_frames(frames: int, sample_rate: float = 16000, frame_length: float = 25.0,
                       frame_shift: float = 10.0) -> int:
    """The fewest samples that give ``frames`` frames (snip_edges): the inverse of :func:`num_frames`."""
    size, shift = _frame_sizes(sample_rate, frame_length, frame_shift)
    return (frames - 1) * shift + size


def num_frames(num_samples: int, sample_rate: float = 16000, frame_length: float = 25.0,
               frame_shift: float = 10.0, snip_edges: bool = True) -> int:
    """How many frames :func:`kaldi_fbank` returns for ``num_samples`` samples."""
    size, shift = _frame_sizes(sample_rate, frame_length, frame_shift)
    if snip_edges:
        return 0 if num_samples < size else 1 + (num_samples - size) // shift
    return (num_samples + shift // 2) // shift


def _fbank(waves: torch.Tensor, name: str, **o: Any) -> torch.Tensor:
    """Core computation on a (batch, samples) tensor."""
    sample_rate = o["sample_rate"]
    if not sample_rate > 0:
        raise ConfigError(f"sample_rate: must be > 0, got {sample_rate}")
    if o["window"] not in WINDOWS:
        raise ConfigError(f"window: unknown window {o['window']!r}, expected one of {WINDOWS}")
    if not 0.0 <= o["preemphasis"] <= 1.0:
        raise ConfigError(f"preemphasis: must be in [0, 1], got {o['preemphasis']}")
    if o["num_mel_bins"] <= 3:
        raise ConfigError(f"num_mel_bins: must be > 3, got {o['num_mel_bins']}")
    size, shift = _frame_sizes(sample_rate, o["frame_length"], o["frame_shift"])
    fft_size = 1 << (size - 1).bit_length() if o["round_to_power_of_two"] else size
    if fft_size % 2:
        raise ConfigError(f"frame_length: FFT size {fft_size} is odd; use round_to_power_of_two or an even frame")
    n = waves.shape[-1]
    if n < size:
        raise AudioError(
            f"{name}: {n} samples is shorter than one frame of {size} samples "
            f"({o['frame_length']:g} ms at {sample_rate:g} Hz)"
        )
    device, dtype = waves.device, waves.dtype
    window = _window(o["window"], size, float(o["blackman_coeff"]), device, dtype)
    banks = _mel_banks(o["num_mel_bins"], fft_size, float(sample_rate), float(o["low_freq"]),
                       float(o["high_freq"]), device, dtype)

    frames = _frames(waves, size, shift, o["snip_edges"])  # (B, m, size), a strided view
    batch, count = frames.shape[:2]
    mel = torch.empty(batch, count, o["num_mel_bins"], device=device, dtype=dtype)
    energy = torch.empty(batch, count, device=device, dtype=dtype) if o["use_energy"] else None
    # On CPU, work in blocks of about _BLOCK_FRAMES frames: the intermediate (frames x FFT)
    # arrays then stay in cache, ~2x faster than one pass over a large batch. GPUs prefer one pass.
    block_frames = _BLOCK_FRAMES if device.type == "cpu" else count
    items = max(1, block_frames // count)
    for b in range(0, batch, items):
        for f in range(0, count, block_frames):
            block = (slice(b, b + items), slice(f, f + block_frames))
            mel[block], block_energy = _frame_features(frames[block], window, banks, fft_size, o)
            if energy is not None:
                energy[block] = block_energy

    if energy is not None:
        parts = [mel, energy.unsqueeze(-1)] if o["htk_compat"] else [energy.unsqueeze(-1), mel]
        mel = torch.cat(parts, dim=-1)
    if o["subtract_mean"]:
        mel = mel - mel.mean(dim=1, keepdim=True)
    return mel


def _frame_features(
    frames: torch.Tensor, window: torch.Tensor, banks: torch.Tensor, fft_size: int, o: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mel features (and log energy if asked) of a block of raw frames (..., size)."""
    if o["dither"] != 0.0:
        frames = frames + o["dither"] * torch.randn(frames.shape, device=frames.device, dtype=frames.dtype)
    if o["remove_dc_offset"]:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    energy = _log_energy(frames, o["energy_floor"]) if o["use_energy"] and o["raw_energy"] else None
    c = o["preemphasis"]
    if c != 0.0:  # y[j] = x[j] - c * x[j-1], with x[-1] taken as x[0]
        # Product then difference, in two roundings like Kaldi: a fused multiply-subtract
        # (torch.sub(..., alpha=c)) changes near-silent mel bins by up to 1e-2 in log.
        emphasised = torch.empty_like(frames)
        emphasised[..., 1:] = frames[..., 1:] - c * frames[..., :-1]
        emphasised[..., 0] = frames[..., 0] - c * frames[..., 0]
        frames = emphasised
    frames = frames * window
    if o["use_energy"] and not o["raw_energy"]:
        energy = _log_energy(frames, o["energy_floor"])

    spectrum = torch.fft.rfft(frames, n=fft_size)  # zero-pads each frame to fft_size
    spectrum = spectrum.real.square() + spectrum.imag.square()  # power
    if not o["use_power"]:
        spectrum = spectrum.sqrt()  # magnitude
    mel = spectrum @ banks
    if o["use_log_fbank"]:
        mel = mel.clamp_min(LOG_FLOOR).log()
    return mel, energy


def _frames(waves: torch.Tensor, size: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """Overlapping frames (B, m, size), a strided view where possible.

    Without ``snip_edges`` Kaldi centres frames on multiples of the shift and fills the
    edges by reflection: the left edge is the first samples reversed, the right edge the
    whole signal reversed (so sample order is ... x1 x0 | x0 x1 ... xn | xn xn-1 ...).
    """
    if snip_edges:
        return waves.unfold(-1, size, shift)
    n = waves.shape[-1]
    count = (n + shift // 2) // shift
    pad = size // 2 - shift // 2
    reversed_waves = waves.flip(-1)
    if pad > 0:
        extended = torch.cat([reversed_waves[:, n - pad:], waves, reversed_waves], dim=-1)
    else:
        extended = torch.cat([waves[:, -pad:], reversed_waves], dim=-1)
    return extended.unfold(-1, size, shift)[:, :count]


def _log_energy(frames: torch.Tensor, energy_floor: float) -> torch.Tensor:
    energy = frames.pow(2).sum(-1).clamp_min(LOG_FLOOR).log()
    if energy_floor != 0.0:
        energy = energy.clamp_min(math.log(energy_floor))
    return energy


def _frame_sizes(sample_rate: float, frame_length: float, frame_shift: float) -> tuple[int, int]:
    """Frame and hop in samples, truncated as Kaldi/torchaudio do (rate * ms * 0.001)."""
    size = int(sample_rate * frame_length * 0.001)
    shift = int(sample_rate * frame_shift * 0.001)
    if size < 2:
        raise ConfigError(f"frame_length: {frame_length} ms gives {size} samples at {sample_rate} Hz; need >= 2")
    if shift < 1:
        raise ConfigError(f"frame_shift: {frame_shift} ms gives {shift} samples at {sample_rate} Hz; need >= 1")
    return size, shift


@lru_cache(maxsize=64)
def _window(kind: str, size: int, blackman_coeff: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Symmetric windows evaluated in float32 like Kaldi's BaseFloat; the result is cast to dtype.
    if kind in ("hanning", "povey"):
        w = torch.hann_window(size, periodic=False, dtype=torch.float32)
        if kind == "povey":  # Kaldi's default: Hann raised to 0.85
            w = w.pow(0.85)
    elif kind == "hamming":
        w = torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float32)
    elif kind == "rectangular":
        w = torch.ones(size)
    elif kind == "blackman":  # Kaldi's generalised Blackman, not numpy's coefficients
        phase = (2.0 * math.pi / (size - 1)) * torch.arange(size, dtype=torch.float32)
        w = blackman_coeff - 0.5 * torch.cos(phase) + (0.5 - blackman_coeff) * torch.cos(2 * phase)
    else:
        raise ConfigError(f"window: unknown window {kind!r}, expected one of {WINDOWS}")
    return w.to(device=device, dtype=dtype)


@lru_cache(maxsize=64)
def _mel_banks(num_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float,
               device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ConfigError(
            f"low_freq/high_freq: need 0 <= low < high <= Nyquist ({nyquist:g} Hz), got {low_freq:g} and {high_freq:g}"
        )

    # Kaldi (and torchaudio) evaluate the filter edges in float32; doing the same keeps the
    # small weights at the foot of narrow low-frequency filters identical.
    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 1127.0 * (1.0 + hz / 700.0).log()

    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    step = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float32)[:, None]  # (bins, 1)
    left, centre, right = mel_low + index * step, mel_low + (index + 1) * step, mel_low + (index + 2) * step
    fft_mel = to_mel(torch.arange(fft_size // 2, dtype=torch.float32) * (sample_rate / fft_size))[None, :]
    rising = (fft_mel - left) / (centre - left)
    falling = (right - fft_mel) / (right - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)  # (bins, fft_size // 2)
    weights = torch.cat([weights, torch.zeros(num_bins, 1)], dim=1)  # the Nyquist bin gets no weight
    return weights.T.contiguous().to(device=device, dtype=dtype)


def as_float_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A float tensor view of ``x`` (numpy or torch); anything else is an AudioError naming ``name``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise AudioError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise AudioError(f"{name}: expected floating-point samples in [-1, 1], got {x.dtype}")
    return x


_DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(kaldi_fbank).parameters.items()
    if name != "waveform"
}
