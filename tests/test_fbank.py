"""Parity of ssamba.features.kaldi_fbank with torchaudio's Kaldi-compliant fbank.

Fixture: tests/fixtures/fbank/reference.npz was produced once by
scripts/make_fbank_fixtures.py, which runs torchaudio 2.11.0's
``torchaudio/compliance/kaldi.py`` (taken from the PyPI wheel, imported on its own with a
stub ``torchaudio`` module, executed with this project's torch 2.13.0+cpu) on
deterministically generated signals: white noise, a log chirp, a speech-like harmonic +
formant signal with 4 Hz AM, a stereo PCM_16 file (mixed to mono by load_audio) and an
8 kHz signal resampled to 16 kHz by load_audio's resample_poly call; all lengths are not
multiples of the 160-sample hop. The exact command lines are in that script's docstring;
torchaudio itself is not needed to run these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssamba.audio import load_audio
from ssamba.errors import AudioError, ConfigError
from ssamba.features import kaldi_fbank, kaldi_fbank_batch, mel_banks, num_frames

FIXTURE = Path(__file__).parent / "fixtures" / "fbank" / "reference.npz"
SIGNALS = ["noise", "chirp", "speech", "stereo_pcm16", "speech_8k"]
# variant -> kaldi_fbank keyword options (our names), matching the script's VARIANTS
VARIANTS = {
    "log_hanning": {},
    "power_hanning": {"use_log_fbank": False},
    "log_povey": {"window": "povey"},
    "log_hamming": {"window": "hamming"},
    "log_hanning_40bins": {"num_mel_bins": 40},
}
EXTRA_VARIANTS = {
    "log_blackman_energy_first_no_snip": {
        "window": "blackman", "use_energy": True, "htk_compat": False, "snip_edges": False,
    },
    "log_povey_23bins_raw_energy_off": {
        "window": "povey", "num_mel_bins": 23, "use_energy": True, "raw_energy": False,
        "energy_floor": 0.0, "low_freq": 60.0, "high_freq": -400.0,
    },
}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _wave(reference: dict[str, np.ndarray], name: str, tmp_path: Path) -> torch.Tensor:
    """The 16 kHz mono wave of a fixture signal, obtained through load_audio."""
    if name == "stereo_pcm16":
        path = tmp_path / "stereo.wav"
        sf.write(path, reference["stereo_pcm16__input"], 16000, subtype="PCM_16")
        return load_audio(path)
    if name == "speech_8k":
        return load_audio(reference["speech_8k__input"], sample_rate=8000)
    return load_audio(reference[f"{name}__input"], sample_rate=16000)


def _assert_matches(ours: torch.Tensor, expected: np.ndarray, log: bool) -> None:
    ours = ours.numpy()
    assert ours.shape == expected.shape
    if log:
        assert np.abs(ours - expected).max() <= 1e-3
    else:  # power: relative to each frame's largest mel energy (tiny bins are float noise)
        scale = np.abs(expected).max(axis=1, keepdims=True)
        assert (np.abs(ours - expected) / scale).max() <= 1e-4


def test_fixture_provenance(reference):
    meta = json.loads(str(reference["meta"]))
    assert meta["reference"].startswith("torchaudio 2.11.0")
    assert FIXTURE.stat().st_size < 1.5e6


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_with_torchaudio_kaldi(reference, tmp_path, signal, variant):
    wave = _wave(reference, signal, tmp_path)
    ours = kaldi_fbank(wave, **VARIANTS[variant])
    _assert_matches(ours, reference[f"{signal}__{variant}"], log=variant.startswith("log"))


@pytest.mark.parametrize("variant", list(EXTRA_VARIANTS))
def test_parity_less_common_options(reference, variant):
    wave = torch.from_numpy(reference["speech__input"])
    _assert_matches(kaldi_fbank(wave, **EXTRA_VARIANTS[variant]), reference[f"speech__{variant}"], log=True)


def test_loaded_waves_are_the_ones_the_reference_saw(reference, tmp_path):
    mono = _wave(reference, "stereo_pcm16", tmp_path).numpy()
    np.testing.assert_allclose(mono, reference["stereo_pcm16__mono"], atol=1e-7)
    resampled = _wave(reference, "speech_8k", tmp_path).numpy()
    np.testing.assert_allclose(resampled, reference["speech_8k__resampled"], atol=1e-6)


def test_batch_equals_per_item(reference):
    waves = torch.stack([torch.from_numpy(reference[f"{n}__input"][:8000]) for n in ("noise", "chirp", "speech")])
    batch = kaldi_fbank_batch(waves)
    assert batch.shape == (3, num_frames(8000), 128)
    for i in range(3):
        torch.testing.assert_close(batch[i], kaldi_fbank(waves[i]), rtol=0, atol=1e-5)
    batch40 = kaldi_fbank_batch(waves, num_mel_bins=40, window="povey", use_energy=True)
    torch.testing.assert_close(batch40[1], kaldi_fbank(waves[1], num_mel_bins=40, window="povey", use_energy=True),
                               rtol=0, atol=1e-5)


def test_long_input_crossing_processing_blocks_matches_short_pieces():
    """Frames are processed in blocks; a clip longer than one block must equal its pieces."""
    wave = 0.1 * torch.randn(160 * 5000 + 240, generator=torch.Generator().manual_seed(1))
    whole = kaldi_fbank(wave)
    assert whole.shape == (num_frames(wave.numel()), 128) == (5000, 128)
    first = kaldi_fbank(wave[: 160 * 2999 + 400])  # frames 0..2999
    torch.testing.assert_close(whole[:3000], first, rtol=0, atol=1e-5)


def test_frame_count_and_shape_rules():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(559) == 1 and num_frames(560) == 2
    assert kaldi_fbank(torch.zeros(16000)).shape == (98, 128)
    assert kaldi_fbank(torch.zeros(1, 16000)).shape == (98, 128)  # (channels=1, samples) like torchaudio
    assert kaldi_fbank(np.zeros(16000, dtype=np.float32)).shape == (98, 128)
    # all-zero input hits the log floor everywhere
    assert torch.allclose(kaldi_fbank(torch.zeros(1000)), torch.tensor(np.log(np.finfo(np.float32).eps)))
    assert kaldi_fbank(torch.zeros(16000), snip_edges=False).shape == (100, 128)


def test_float64_input_stays_float64_and_agrees():
    wave = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out64 = kaldi_fbank(wave)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), kaldi_fbank(wave.float()), rtol=0, atol=1e-3)


def test_mel_banks_are_triangles_inside_the_band():
    banks = mel_banks(128, 512, 16000)
    assert banks.shape == (257, 128)
    assert torch.all(banks >= 0) and torch.all(banks <= 1)
    assert torch.all(banks[-1] == 0)  # Nyquist bin unused, as in Kaldi
    assert torch.all(banks[0] == 0)  # 0 Hz is below low_freq = 20 Hz
    # With 128 filters on a 512-point FFT the 4th filter (63-92 Hz) falls between FFT
    # bins and is empty, as in Kaldi/torchaudio; that mel bin always sits at the log floor.
    empty = (banks.sum(dim=0) == 0).nonzero().flatten().tolist()
    assert empty == [3]
    peaks = banks.argmax(dim=0)[banks.sum(dim=0) > 0]
    assert torch.all(peaks[1:] >= peaks[:-1])  # centres rise with the bin index
    assert mel_banks(40, 512, 16000).sum(dim=0).min() > 0  # wider filters are never empty
    assert mel_banks(128, 512, 16000) is banks  # cached per settings/device/dtype


@pytest.mark.parametrize(
    ("wave", "options", "error", "needle"),
    [
        (torch.zeros(399), {}, AudioError, "shorter than one frame of 400 samples"),
        (torch.zeros(2, 16000), {}, AudioError, "mix to mono"),
        (torch.zeros(16000, dtype=torch.int16), {}, AudioError, "floating-point"),
        (torch.zeros(16000), {"window": "kaiser"}, ConfigError, "window"),
        (torch.zeros(16000), {"num_mel_bins": 3}, ConfigError, "num_mel_bins"),
        (torch.zeros(16000), {"sample_rate": 0}, ConfigError, "sample_rate"),
        (torch.zeros(16000), {"preemphasis": 1.5}, ConfigError, "preemphasis"),
        (torch.zeros(16000), {"high_freq": 9000.0}, ConfigError, "high_freq"),
    ],
)
def test_bad_input_raises_named_error(wave, options, error, needle):
    with pytest.raises(error, match=needle):
        kaldi_fbank(wave, **options)


def test_batch_rejects_unknown_option_and_bad_shape():
    with pytest.raises(ConfigError, match="window_type"):
        kaldi_fbank_batch(torch.zeros(2, 16000), window_type="hanning")
    with pytest.raises(AudioError, match="waves"):
        kaldi_fbank_batch(torch.zeros(16000))


def test_differentiable_with_respect_to_the_waveform():
    """Gradients flow through the blocked computation (checked against finite differences)."""
    wave = (0.1 * torch.randn(2, 720, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    wave.requires_grad_()
    assert torch.autograd.gradcheck(lambda w: kaldi_fbank_batch(w, num_mel_bins=8), (wave,), eps=1e-6, atol=1e-5)
