"""Fine-tuning augmentation, following the official SSAST/AST data loader, in pure torch.

- SpecAugment: one frequency and one time mask. As torchaudio's FrequencyMasking/TimeMasking:
  width = floor(u * max_width), start = floor(v * (size - u * max_width)), u, v ~ U(0, 1), so a
  width is in [0, max_width). The official loader masks the *unnormalised* fbank with 0; on our
  normalised features that value is (0 - mean) / (2 * std), which the presets use as fill.
- Mixup: lambda ~ Beta(10, 10); waveforms (mean-removed, the second padded/cropped to the
  first's length) and targets are mixed with the same lambda; done for a fraction `mixup_p` of items.
- Fbank noise + time roll (official "noise" option, after normalisation): add U(0,1) * u / 10 with
  u ~ U(0,1), then roll along time by an integer in [-10, 10). Random gain and background noise
  (e.g. Speech Commands' `_background_noise_`) on the waveform are extras, off in the presets.

All randomness comes from an explicit `torch.Generator`, so a seeded run is reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ssamba.errors import ConfigError
from ssamba.features.extractor import FeatureConfig


@dataclass
class AugmentConfig:
    """Augmentation settings of one fine-tuning recipe (all off by default)."""

    freq_mask: int = 0  # SpecAugment max frequency-mask width (bins)
    time_mask: int = 0  # SpecAugment max time-mask width (frames)
    mask_fill: float = 0.0  # value written into masked cells
    mixup_p: float = 0.0  # fraction of items mixed with a random other item
    mixup_alpha: float = 10.0  # lambda ~ Beta(alpha, alpha)
    fbank_noise: bool = False  # official "noise": fbank += U(0,1) * U(0,1) / 10
    time_roll: int = 0  # roll fbank along time by an integer in [-time_roll, time_roll)
    gain_db: float = 0.0  # random waveform gain, uniform in [-gain_db, gain_db] dB
    background_noise_p: float = 0.0  # probability of adding a background-noise clip
    background_snr_db: tuple[float, float] = (0.0, 20.0)  # SNR range for background noise

    def __post_init__(self) -> None:
        for name in ("freq_mask", "time_mask", "time_roll"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AugmentConfig.{name}={getattr(self, name)}: must be >= 0")
        for name in ("mixup_p", "background_noise_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"AugmentConfig.{name}={getattr(self, name)}: must be in [0, 1]")
        if self.mixup_alpha <= 0:
            raise ConfigError(f"AugmentConfig.mixup_alpha={self.mixup_alpha}: must be > 0")
        self.background_snr_db = tuple(float(x) for x in self.background_snr_db)

    @classmethod
    def preset(cls, name: str) -> "AugmentConfig":
        """The official recipe settings: "audioset" (48/192, mixup 0.5), "esc50" (24/96, no
        mixup, noise + roll), "speechcommands" (48/48, mixup 0.6, noise + roll), "none"."""
        presets = {
            "audioset": dict(freq_mask=48, time_mask=192, mixup_p=0.5),
            "esc50": dict(freq_mask=24, time_mask=96, mixup_p=0.0, fbank_noise=True, time_roll=10),
            "speechcommands": dict(freq_mask=48, time_mask=48, mixup_p=0.6, fbank_noise=True, time_roll=10),
            "none": {},
        }
        aliases = {"pretrain": "audioset", "speechcommands_v1": "speechcommands", "speechcommands_v2": "speechcommands"}
        key = aliases.get(name, name)
        if key not in presets:
            raise ConfigError(f"augment preset {name!r}: unknown; choose one of {sorted(presets)}")
        # masked cells hold what silence holds after the preset's normalisation
        fill = FeatureConfig.preset(key).pad_value if key != "none" else 0.0
        return cls(mask_fill=fill, **presets[key])

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- primitives


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def mask_along_axis(x: torch.Tensor, max_width: int, axis: int, generator: torch.Generator | None = None,
                    fill: float = 0.0) -> torch.Tensor:
    """Return a copy of `x` with one band along `axis` set to `fill` (torchaudio mask_along_axis
    semantics: width floor(u * max_width) < max_width, start floor(v * (size - u * max_width)))."""
    if max_width <= 0:
        return x
    size = x.shape[axis]
    value = _uniform(generator) * max_width
    low = _uniform(generator) * (size - value)
    start, end = int(low), int(low) + int(value)
    positions = torch.arange(size).view([-1 if d == axis % x.dim() else 1 for d in range(x.dim())])
    return x.masked_fill((positions >= start) & (positions < end), fill)


def spec_augment(
    fbank: torch.Tensor, freq_mask: int, time_mask: int, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """One frequency mask and one time mask on a (time, freq) fbank (official SpecAugment)."""
    fbank = mask_along_axis(fbank, freq_mask, axis=-1, generator=generator, fill=fill)
    return mask_along_axis(fbank, time_mask, axis=-2, generator=generator, fill=fill)


def sample_beta(alpha: float, beta: float, generator: torch.Generator | None = None) -> float:
    """One draw of Beta(alpha, beta), reproducible from `generator`."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, beta))


def mix_waveforms(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * first + (1 - lam) * second on mean-removed waveforms; `second` is zero-padded or
    cropped to `first`'s length; the mix is mean-removed again (as the official loader)."""
    first = first - first.mean()
    second = second - second.mean()
    if second.shape[-1] < first.shape[-1]:
        second = torch.nn.functional.pad(second, (0, first.shape[-1] - second.shape[-1]))
    second = second[..., : first.shape[-1]]
    mixed = lam * first + (1.0 - lam) * second
    return mixed - mixed.mean()


def mixup_batch(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 10.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Batch mixup on features: mix each example with a random permutation of the batch using
    one lambda ~ Beta(alpha, alpha); returns (mixed inputs, mixed targets, lambda)."""
    lam = sample_beta(alpha, alpha, generator)
    perm = torch.randperm(inputs.shape[0], generator=generator)
    return lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm], lam


def random_gain(waveform: torch.Tensor, max_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale by a gain drawn uniformly in [-max_db, max_db] dB."""
    if max_db <= 0:
        return waveform
    db = (2 * _uniform(generator) - 1) * max_db
    return waveform * (10.0 ** (db / 20.0))


def add_background_noise(
    waveform: torch.Tensor, noise: torch.Tensor, snr_db: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add a random excerpt of `noise` (tiled if shorter) at the given signal-to-noise ratio."""
    n = waveform.shape[-1]
    if noise.shape[-1] < n:
        noise = noise.repeat(n // noise.shape[-1] + 1)
    start = int(torch.randint(0, noise.shape[-1] - n + 1, (1,), generator=generator))
    excerpt = noise[start : start + n]
    signal_power = waveform.pow(2).mean().clamp_min(1e-12)
    noise_power = excerpt.pow(2).mean().clamp_min(1e-12)
    scale = torch.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return waveform + scale * excerpt


def fbank_noise(fbank: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Official noise: fbank + U(0,1) per cell * u / 10, u ~ U(0,1) per clip."""
    return fbank + torch.rand(fbank.shape, generator=generator) * _uniform(generator) / 10.0


def time_roll(fbank: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll a (time, freq) fbank along time by an integer in [-max_shift, max_shift)."""
    if max_shift <= 0:
        return fbank
    shift = int(torch.randint(-max_shift, max_shift, (1,), generator=generator))
    return torch.roll(fbank, shift, dims=-2)


# ----------------------------------------------------------------------------- per-item pipeline


class Augmenter:
    """Applies an AugmentConfig to one item; the data set calls, in order: `wants_mixup` /
    `mixup_pair`, `wants_background_noise`, `augment_waveform`, then `augment_features` on
    the extracted (time, freq) features."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def wants_mixup(self, generator: torch.Generator) -> bool:
        return self.config.mixup_p > 0 and _uniform(generator) < self.config.mixup_p

    def mixup_pair(
        self, wave: torch.Tensor, other: torch.Tensor, target: torch.Tensor, other_target: torch.Tensor,
        generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix two waveforms and their targets with lambda ~ Beta(alpha, alpha)."""
        lam = sample_beta(self.config.mixup_alpha, self.config.mixup_alpha, generator)
        return mix_waveforms(wave, other, lam), lam * target + (1.0 - lam) * other_target

    def wants_background_noise(self, generator: torch.Generator) -> bool:
        return self.config.background_noise_p > 0 and _uniform(generator) < self.config.background_noise_p

    def augment_waveform(self, wave: torch.Tensor, generator: torch.Generator, noise: torch.Tensor | None = None) -> torch.Tensor:
        wave = random_gain(wave, self.config.gain_db, generator)
        if noise is not None:
            low, high = self.config.background_snr_db
            wave = add_background_noise(wave, noise, low + (high - low) * _uniform(generator), generator)
        return wave

    def augment_features(self, fbank: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        fbank = spec_augment(fbank, c.freq_mask, c.time_mask, generator, fill=c.mask_fill)
        if c.fbank_noise:
            fbank = fbank_noise(fbank, generator)
        return time_roll(fbank, c.time_roll, generator)
