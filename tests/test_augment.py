"""SpecAugment, mixup, noise, roll and gain: semantics, distributions and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from ssamba.errors import ConfigError
from ssamba.features import augment as A


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def masked_band(x: torch.Tensor, out: torch.Tensor, axis: int) -> tuple[int, int]:
    """(start, width) of the masked band along axis; asserts whole rows/columns are masked."""
    changed = out != x
    other = 1 - axis
    lines = changed.any(dim=other)
    assert torch.equal(lines, changed.all(dim=other))  # a band spans the whole other axis
    index = torch.nonzero(lines).flatten()
    if index.numel() == 0:
        return -1, 0
    assert index[-1] - index[0] + 1 == index.numel()  # contiguous
    return int(index[0]), int(index.numel())


@pytest.mark.parametrize("axis,size,max_width", [(1, 128, 48), (0, 100, 96)])
def test_mask_width_and_start_follow_torchaudio_semantics(axis, size, max_width):
    x = torch.randn(100 if axis == 1 else size, size if axis == 1 else 128) + 10.0  # never equals fill
    widths, ends = [], []
    g = gen(0)
    for _ in range(3000):
        out = A.mask_along_axis(x, max_width, axis=axis, generator=g, fill=-1.5)
        assert (out[out != x] == -1.5).all()
        start, width = masked_band(x, out, axis)
        widths.append(width)
        if width:
            ends.append(start + width)
    widths = np.array(widths)
    assert widths.max() == max_width - 1 and widths.min() == 0  # floor(u * max) in [0, max)
    assert widths.mean() == pytest.approx((max_width - 1) / 2, abs=1.0)  # uniform over 0..max-1
    assert max(ends) <= x.shape[axis]
    # discrete uniform widths: chi-square against equal counts
    counts = np.bincount(widths, minlength=max_width)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_spec_augment_masks_one_band_per_axis_and_is_reproducible():
    x = torch.randn(512, 128) + 10
    out = A.spec_augment(x, 24, 96, generator=gen(5), fill=0.0)
    assert torch.equal(out, A.spec_augment(x, 24, 96, generator=gen(5), fill=0.0))
    assert not torch.equal(out, A.spec_augment(x, 24, 96, generator=gen(6), fill=0.0))
    masked = out == 0
    freq_cols = masked.all(dim=0)
    time_rows = masked.all(dim=1)
    assert freq_cols.sum() < 24 and time_rows.sum() < 96
    # every masked cell lies in a fully masked frequency column or time row
    assert torch.equal(masked, freq_cols[None, :] | time_rows[:, None])
    assert torch.equal(A.spec_augment(x, 0, 0, generator=gen(5)), x)


def test_mixup_lambda_is_beta_10_10():
    g = gen(1)
    draws = np.array([A.sample_beta(10, 10, g) for _ in range(2000)])
    assert stats.kstest(draws, stats.beta(10, 10).cdf).pvalue > 1e-3
    assert stats.kstest(draws, stats.uniform().cdf).pvalue < 1e-6


def test_mix_waveforms_pads_crops_and_weights():
    a = torch.ones(10) * 3 + torch.arange(10.0)
    b_short = torch.arange(4.0)
    mixed = A.mix_waveforms(a, b_short, 0.7)
    a0 = a - a.mean()
    b0 = torch.nn.functional.pad(b_short - b_short.mean(), (0, 6))
    expected = 0.7 * a0 + 0.3 * b0
    torch.testing.assert_close(mixed, expected - expected.mean())
    assert A.mix_waveforms(a, torch.randn(25), 0.5).shape == (10,)


def test_augmenter_mixup_pair_mixes_targets_with_same_lambda():
    aug = A.Augmenter(A.AugmentConfig(mixup_p=1.0))
    g1, g2 = gen(3), gen(3)
    a, b = torch.randn(1600), torch.randn(1600)
    ta, tb = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    wave, target = aug.mixup_pair(a, b, ta, tb, g1)
    lam = A.sample_beta(10, 10, g2)
    torch.testing.assert_close(target, torch.tensor([lam, 0, 1 - lam]))
    torch.testing.assert_close(wave, A.mix_waveforms(a, b, lam))


def test_mixup_batch_permutes_with_one_lambda():
    x = torch.arange(4.0)[:, None].repeat(1, 3)
    y = torch.eye(4)
    mx, my, lam = A.mixup_batch(x, y, generator=gen(0))
    assert torch.allclose(my.sum(dim=1), torch.ones(4))
    partner = (my - lam * y).argmax(dim=1)  # the row each example was mixed with
    torch.testing.assert_close(mx, lam * x + (1 - lam) * x[partner])


def test_fbank_noise_and_time_roll():
    x = torch.randn(50, 8)
    noisy = A.fbank_noise(x, gen(0))
    delta = noisy - x
    assert (delta >= 0).all() and (delta < 0.1).all() and delta.max() > 0
    rolled = A.time_roll(x, 10, gen(1))
    shifts = [s for s in range(-10, 10) if torch.equal(rolled, torch.roll(x, s, dims=0))]
    assert len(shifts) == 1
    seen = {int(torch.randint(-10, 10, (1,), generator=g)) for g in [gen(i) for i in range(300)]}
    assert seen == set(range(-10, 10))


def test_gain_and_background_noise_snr():
    wave = torch.sin(torch.linspace(0, 200, 16000))
    for seed in range(5):
        gained = A.random_gain(wave, 6.0, gen(seed))
        ratio_db = 20 * torch.log10(gained.abs().max() / wave.abs().max())
        assert -6.0 - 1e-4 <= ratio_db <= 6.0 + 1e-4
    noise = torch.randn(4000)
    mixed = A.add_background_noise(wave, noise, snr_db=10.0, generator=gen(0))
    added = mixed - wave
    snr = 10 * torch.log10(wave.pow(2).mean() / added.pow(2).mean())
    assert float(snr) == pytest.approx(10.0, abs=1e-3)


def test_presets_match_official_recipes():
    audioset = A.AugmentConfig.preset("audioset")
    assert (audioset.freq_mask, audioset.time_mask, audioset.mixup_p) == (48, 192, 0.5)
    esc = A.AugmentConfig.preset("esc50")
    assert (esc.freq_mask, esc.time_mask, esc.mixup_p) == (24, 96, 0.0)
    sc = A.AugmentConfig.preset("speechcommands_v2")
    assert (sc.freq_mask, sc.time_mask, sc.mixup_p) == (48, 48, 0.6)
    assert esc.fbank_noise and sc.fbank_noise and not audioset.fbank_noise
    # masks write the normalised value of a zero log-mel cell: (0 - mean) / (2 * std)
    assert esc.mask_fill == pytest.approx(6.6268077 / (2 * 5.358466))
    assert A.AugmentConfig.preset("none") == A.AugmentConfig()
    with pytest.raises(ConfigError, match="unknown"):
        A.AugmentConfig.preset("imagenet")
    with pytest.raises(ConfigError, match="mixup_p"):
        A.AugmentConfig(mixup_p=1.5)
