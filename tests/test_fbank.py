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


# ---------------------------------------------------------------- the parity criterion
# Two correct float32 implementations of the same fbank differ by rounding only. A mel energy
# M_j is a weighted sum of FFT powers |X_k|^2; the FFT's error is absolute, proportional to the
# frame's whole energy E = sum_j M_j (normwise bound, growing ~log2 of the FFT size, 512 here):
# |dX_k| ~ FFT_GROWTH * eps * sqrt(E). So a power |X_k|^2 moves by ~2 |X_k| |dX_k|, i.e. relative
# to M_j by 2 * FFT_GROWTH * eps * sqrt(E / M_j). Add ROUNDING for the elementwise float32 work
# (window, pre-emphasis, DC removal, squaring, the mel sum, the log): a few dozen operations.
# Bins near the top of the frame are thus held to ~1e-5 relative, while a bin 24 nats below the
# frame's energy (which an AMD CPU computes 8e-3 nats away from an Intel one) gets ~0.3.
EPS32 = float(np.finfo(np.float32).eps)
FFT_GROWTH = np.log2(512)
ROUNDING = 64 * EPS32


def log_tolerance(expected_log: np.ndarray) -> np.ndarray:
    """Per-element bound on |d log M| = |dM / M| for a (frames, bins) log-mel reference."""
    log_total = np.logaddexp.reduce(expected_log.astype(np.float64), axis=1, keepdims=True)  # log E
    return ROUNDING + 2 * FFT_GROWTH * EPS32 * np.sqrt(np.exp(log_total - expected_log))


def power_tolerance(expected: np.ndarray) -> np.ndarray:
    """The same bound for mel powers, in absolute terms: |dM| <= ROUNDING M + 2 g eps sqrt(E M)."""
    power = expected.astype(np.float64)
    total = power.sum(axis=1, keepdims=True)
    return ROUNDING * power + 2 * FFT_GROWTH * EPS32 * np.sqrt(total * power)


def parity_violations(ours: np.ndarray, expected: np.ndarray, log: bool) -> int:
    """How many elements of `ours` lie outside the float32 bound around `expected`."""
    assert ours.shape == expected.shape
    tolerance = log_tolerance(expected) if log else power_tolerance(expected)
    return int((np.abs(ours.astype(np.float64) - expected) > tolerance).sum())


def _assert_matches(ours: torch.Tensor, expected: np.ndarray, log: bool) -> None:
    assert parity_violations(ours.numpy(), expected, log) == 0
    if log:  # the bulk of the spectrum is far from the floor: there the match is tight
        assert np.median(np.abs(ours.numpy() - expected)) <= ROUNDING


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


@pytest.mark.parametrize("signal", ["noise", "chirp", "speech"])
@pytest.mark.parametrize("mutation", [
    {"window": "hamming"},           # wrong window
    {"preemphasis": 0.96},           # pre-emphasis off by 0.01
    {"low_freq": 25.0},              # mel matrix: band edge moved by 5 Hz
    {"high_freq": -10.0},            # mel matrix: top edge 10 Hz low
    {"dither": 1e-5},                # dither left on, at -100 dBFS
    {"remove_dc_offset": False},     # DC removal skipped
])
def test_parity_criterion_rejects_a_wrong_fbank(reference, signal, mutation):
    """The float32 bound is loose only near the floor: each plausible bug breaks it widely."""
    torch.manual_seed(0)
    mutated = kaldi_fbank(torch.from_numpy(reference[f"{signal}__input"]), **mutation).numpy()
    expected = reference[f"{signal}__log_hanning"]
    assert parity_violations(mutated, expected, log=True) > 0.02 * expected.size


def test_loaded_waves_are_the_ones_the_reference_saw(reference, tmp_path):
    mono = _wave(reference, "stereo_pcm16", tmp_path).numpy()
    np.testing.assert_allclose(mono, reference["stereo_pcm16__mono"], atol=1e-7)
    resampled = _wave(reference, "speech_8k", tmp_path).numpy()
    np.testing.assert_allclose(resampled, reference["speech_8k__resampled"], atol=1e-6)


def test_batch_equals_per_item(reference):
    waves = torch.stack([torch.from_numpy(reference[f"{n}__input"][:8000]) for n in ("noise", "chirp", "speech")])
    batch = kaldi_fbank_batch(waves)
    assert batch.shape == (3, num_frames(8000), 128)
    for i in range(3):  # batched and single FFTs may round differently: the float32 parity bound
        _assert_matches(batch[i], kaldi_fbank(waves[i]).numpy(), log=True)
    batch40 = kaldi_fbank_batch(waves, num_mel_bins=40, window="povey", use_energy=True)
    _assert_matches(batch40[1], kaldi_fbank(waves[1], num_mel_bins=40, window="povey", use_energy=True).numpy(),
                    log=True)


def test_long_input_crossing_processing_blocks_matches_short_pieces():
    """Frames are processed in blocks; a clip longer than one block must equal its pieces."""
    wave = 0.1 * torch.randn(160 * 5000 + 240, generator=torch.Generator().manual_seed(1))
    whole = kaldi_fbank(wave)
    assert whole.shape == (num_frames(wave.numel()), 128) == (5000, 128)
    first = kaldi_fbank(wave[: 160 * 2999 + 400])  # frames 0..2999
    _assert_matches(whole[:3000], first.numpy(), log=True)


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
    _assert_matches(kaldi_fbank(wave.float()), out64.numpy(), log=True)  # float64 is the exact side


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
