"""FeatureConfig presets/serialisation and FeatureExtractor against a hand computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ssamba.errors import AudioError, ConfigError
from ssamba.features import FeatureConfig, FeatureExtractor, kaldi_fbank, pad_or_crop


def _wave(seconds: float, seed: int = 0, dc: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(16000 * seconds), generator=g) + dc


def _by_hand(wave: torch.Tensor, target_length: int | None, mean: float, std: float) -> torch.Tensor:
    """The official recipe written out step by step."""
    fb = kaldi_fbank(wave - wave.mean(), num_mel_bins=128, window="hanning", htk_compat=True,
                     use_energy=False, dither=0.0, frame_shift=10.0)
    if target_length is not None:
        if fb.shape[0] < target_length:
            fb = torch.cat([fb, torch.zeros(target_length - fb.shape[0], 128)])
        fb = fb[:target_length]
    return (fb - mean) / (std * 2)


@pytest.mark.parametrize(
    ("name", "mean", "std", "length"),
    [
        ("audioset", -4.2677393, 4.5689974, 1024),
        ("pretrain", -4.2677393, 4.5689974, 1024),
        ("esc50", -6.6268077, 5.358466, 512),
        ("speechcommands", -6.845978, 5.5654526, 128),
    ],
)
def test_presets_carry_published_statistics(name, mean, std, length):
    config = FeatureConfig.preset(name)
    assert (config.mean, config.std, config.target_length) == (mean, std, length)
    assert (config.sample_rate, config.num_mel_bins) == (16000, 128)


def test_default_config_is_the_pretraining_preset_and_overrides_apply():
    assert FeatureConfig() == FeatureConfig.preset("audioset")
    assert FeatureConfig.preset("ESC50", target_length=None).target_length is None


def test_config_round_trips_through_json():
    config = FeatureConfig.preset("speechcommands", target_length=100)
    restored = FeatureConfig.from_dict(json.loads(json.dumps(config.asdict())))
    assert restored == config and isinstance(restored.mean, float)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: FeatureConfig.preset("librispeech"), "unknown name 'librispeech'"),
        (lambda: FeatureConfig.from_dict({"mean": 0.0, "stdev": 1.0}), "features.stdev: unknown setting"),
        (lambda: FeatureConfig(std=0.0), "std"),
        (lambda: FeatureConfig(target_length=0), "target_length"),
        (lambda: FeatureConfig(sample_rate=-1), "sample_rate"),
        (lambda: FeatureConfig(num_mel_bins=2), "num_mel_bins"),
        (lambda: FeatureConfig(mean=float("nan")), "mean"),
    ],
)
def test_bad_config_is_a_config_error(build, needle):
    with pytest.raises(ConfigError, match=needle):
        build()


def test_padding_matches_hand_computation_and_padded_frames_hold_minus_mean_over_2std():
    config = FeatureConfig.preset("esc50")  # 512 frames
    wave = _wave(2.0, dc=0.3)  # 198 frames -> padded; the DC offset must be removed first
    out = FeatureExtractor(config)(wave)
    assert out.shape == (512, 128)
    torch.testing.assert_close(out, _by_hand(wave, 512, config.mean, config.std), rtol=0, atol=1e-5)
    pad_value = (0.0 - config.mean) / (2 * config.std)
    assert torch.allclose(out[198:], torch.full((512 - 198, 128), pad_value))
    assert not torch.allclose(out[197], torch.full((128,), pad_value))


def test_cropping_keeps_the_first_frames():
    config = FeatureConfig.preset("speechcommands")  # 128 frames
    wave = _wave(3.0, seed=1)  # 298 frames
    out = FeatureExtractor(config)(wave)
    assert out.shape == (128, 128)
    torch.testing.assert_close(out, _by_hand(wave, 128, config.mean, config.std), rtol=0, atol=1e-5)


def test_normalisation_value_by_hand_on_one_element():
    config = FeatureConfig(mean=-5.0, std=2.5, target_length=None)
    wave = _wave(0.5, seed=2)
    raw = kaldi_fbank(wave - wave.mean())
    out = FeatureExtractor(config)(wave)
    assert out.shape == raw.shape == (48, 128)  # natural length kept
    assert out[10, 60].item() == pytest.approx((raw[10, 60].item() + 5.0) / 5.0, abs=1e-6)
    torch.testing.assert_close(FeatureExtractor(config).denormalize(out), raw, rtol=0, atol=1e-5)


def test_wave_mean_is_removed_before_fbank():
    extractor = FeatureExtractor("esc50")
    wave = _wave(1.0, seed=3)
    torch.testing.assert_close(extractor(wave + 0.25), extractor(wave - wave.mean()), rtol=0, atol=1e-4)


def test_batch_equals_per_item_tensor_and_ragged_list():
    extractor = FeatureExtractor("speechcommands")
    waves = torch.stack([_wave(1.0, seed=s, dc=0.1 * s) for s in range(4)])
    batch = extractor.batch(waves)
    assert batch.shape == (4, 128, 128)
    for i in range(4):
        torch.testing.assert_close(batch[i], extractor(waves[i]), rtol=0, atol=1e-5)
    ragged = [_wave(0.6, seed=5), _wave(1.7, seed=6).numpy()]
    out = extractor.batch(ragged)
    assert out.shape == (2, 128, 128)
    torch.testing.assert_close(out[0], extractor(ragged[0]), rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], extractor(torch.from_numpy(ragged[1])), rtol=0, atol=1e-5)


def test_ragged_batch_without_target_length_is_refused():
    extractor = FeatureExtractor(FeatureConfig(target_length=None))
    with pytest.raises(AudioError, match="lengths differ"):
        extractor.batch([_wave(0.5), _wave(0.6)])


def test_extract_file_loads_mixes_and_resamples(tmp_path):
    wave = _wave(1.0, seed=7)
    path = tmp_path / "clip.wav"
    stereo = np.stack([wave.numpy(), wave.numpy()], axis=1)
    sf.write(path, stereo, 16000, subtype="FLOAT")
    extractor = FeatureExtractor("esc50")
    torch.testing.assert_close(extractor.extract_file(path), extractor(wave), rtol=0, atol=1e-6)
    with pytest.raises(AudioError, match="no such file"):
        extractor.extract_file(tmp_path / "missing.wav")


def test_pad_or_crop_on_batches():
    x = torch.ones(2, 5, 3)
    assert pad_or_crop(x, 7)[:, 5:].abs().sum() == 0 and pad_or_crop(x, 7).shape == (2, 7, 3)
    assert pad_or_crop(x, 2).shape == (2, 2, 3)
    assert pad_or_crop(x, None) is x


def test_bad_waveforms():
    extractor = FeatureExtractor()
    with pytest.raises(AudioError, match="1-D"):
        extractor(torch.zeros(2, 16000))
    with pytest.raises(AudioError, match="floating-point"):
        extractor(torch.zeros(16000, dtype=torch.int32))
    with pytest.raises(AudioError, match="shorter than one frame"):
        extractor(torch.zeros(300))
