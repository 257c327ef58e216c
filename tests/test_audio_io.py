"""ssamba.audio.load_audio / audio_info: formats, mono mixing, resampling and every error case."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from ssamba.audio import audio_info, load_audio, resample
from ssamba.errors import AudioError


def _sine(freq: float, sr: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: torch.Tensor, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.numel())))
    return float(np.fft.rfftfreq(wave.numel(), 1 / sr)[spectrum.argmax()])


# ---------------------------------------------------------------- formats and round trips

def test_wav_round_trip_is_float32_mono_1d(tmp_path):
    x = _sine(440, 16000, 0.5)
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.dim() == 1
    np.testing.assert_array_equal(y.numpy(), x)
    assert torch.equal(load_audio(str(path)), y)  # str and Path both accepted


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "atol"),
    [("flac", "FLAC", "PCM_16", 1e-4), ("ogg", "OGG", "VORBIS", None), ("mp3", "MP3", "MPEG_LAYER_III", None)],
)
def test_compressed_round_trips(tmp_path, ext, fmt, subtype, atol):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}/{subtype}")
    x = _sine(1000, 16000, 1.0, amplitude=0.3)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path)
    info = audio_info(path)
    assert info.sample_rate == 16000 and info.channels == 1
    if atol is not None:  # lossless
        assert y.numel() == x.size
        np.testing.assert_allclose(y.numpy(), x, atol=atol)
    else:  # lossy codecs: encoder delay/padding changes the length a little; the tone survives
        assert abs(y.numel() - x.size) < 0.1 * x.size
        assert _peak_hz(y, 16000) == pytest.approx(1000, abs=5)
        assert np.sqrt(np.mean(y.numpy() ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


def test_audio_info_reads_header_without_decoding(tmp_path):
    path = tmp_path / "s.flac"
    sf.write(path, np.zeros((22050, 2), dtype=np.float32), 44100, format="FLAC")
    info = audio_info(path)
    assert (info.sample_rate, info.frames, info.channels, info.format) == (44100, 22050, 2, "FLAC")
    assert info.duration == pytest.approx(0.5)
    assert info.path == str(path)


# ---------------------------------------------------------------- mono mixing

def test_stereo_file_is_averaged_to_mono(tmp_path):
    left, right = _sine(300, 16000, 0.5), _sine(700, 16000, 0.5, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path).numpy(), (left + right) / 2, atol=1e-7)


def test_array_layout_rule_numpy_samples_channels_tensor_channels_samples():
    left, right = _sine(300, 16000, 0.5), _sine(700, 16000, 0.5)
    expected = (left + right) / 2
    from_numpy = load_audio(np.stack([left, right], axis=1), sample_rate=16000)  # (samples, channels)
    from_tensor = load_audio(torch.from_numpy(np.stack([left, right])), sample_rate=16000)  # (channels, samples)
    np.testing.assert_allclose(from_numpy.numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(from_tensor.numpy(), expected, atol=1e-7)
    mono = load_audio(torch.from_numpy(left)[None], sample_rate=16000)  # (1, samples) tensor
    np.testing.assert_array_equal(mono.numpy(), left)


def test_transposed_array_is_refused_not_mixed():
    stereo = np.stack([_sine(300, 16000, 0.5)] * 2)  # (2, samples): wrong for numpy
    with pytest.raises(AudioError, match="transposed"):
        load_audio(stereo, sample_rate=16000)
    with pytest.raises(AudioError, match="transposed"):
        load_audio(torch.from_numpy(stereo.T.copy()), sample_rate=16000)  # (samples, 2): wrong for tensors


def test_int16_pcm_array_is_scaled_like_soundfile(tmp_path):
    pcm = (np.round(_sine(500, 16000, 0.5) * 32767)).astype(np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(pcm, sample_rate=16000).numpy(), load_audio(path).numpy())


# ---------------------------------------------------------------- resampling

def test_sine_at_44k1_resampled_keeps_its_frequency_and_length(tmp_path):
    x = _sine(1000, 44100, 2.0)
    path = tmp_path / "hi.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    y = load_audio(path)
    assert y.numel() == int(np.ceil(x.size * 16000 / 44100)) == 32000
    assert _peak_hz(y, 16000) == pytest.approx(1000, abs=1)
    # polyphase filter quality: amplitude kept, away from the edge transients
    assert np.abs(y.numpy()[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


def test_upsampling_8k_and_rejecting_content_above_new_nyquist():
    y = load_audio(_sine(1000, 8000, 1.0), sample_rate=8000)
    assert y.numel() == 16000 and _peak_hz(y, 16000) == pytest.approx(1000, abs=1)
    # 10 kHz is above the 8 kHz Nyquist of 16 kHz audio: the polyphase low-pass must remove it
    # (measured -55 dB) rather than fold it to 6 kHz
    high = load_audio(_sine(10000, 22050, 1.0), sample_rate=22050)
    assert np.abs(high.numpy()[500:-500]).max() < 0.5 * 10 ** (-44 / 20)
    target = load_audio(_sine(1000, 48000, 1.0), sample_rate=48000, target_sr=8000)
    assert target.numel() == 8000 and _peak_hz(target, 8000) == pytest.approx(1000, abs=1)


def test_resample_uses_reduced_ratio_and_no_op_at_target_rate():
    x = _sine(440, 16000, 0.5)
    assert torch.equal(load_audio(x, sample_rate=16000), torch.from_numpy(x))
    assert resample(x, 22050, 16000).size == int(np.ceil(x.size * 320 / 441))


# ---------------------------------------------------------------- errors (type + file named)

def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as e:
        load_audio(path)
    assert str(path) in str(e.value)
    with pytest.raises(AudioError, match="no such file"):
        audio_info(path)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory") as e:
        load_audio(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is text, not a RIFF file\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file") as e:
        load_audio(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AudioError, match="not a readable audio file") as e:
        audio_info(path)
    assert str(path) in str(e.value)


def test_truncated_corrupt_file(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, _sine(440, 16000, 1.0), 16000, format="FLAC")
    bad = tmp_path / "bad.flac"
    bad.write_bytes(good.read_bytes()[:30])  # header cut in the middle
    with pytest.raises(AudioError) as e:
        load_audio(bad)
    assert str(bad) in str(e.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as e:
        load_audio(path)
    assert str(path) in str(e.value)


def test_valid_header_but_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no samples") as e:
        load_audio(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_samples_in_file(tmp_path, bad):
    x = _sine(440, 16000, 0.5)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf") as e:
        load_audio(path)
    assert str(path) in str(e.value)


def test_nan_in_array_names_the_array():
    x = _sine(440, 16000, 0.5)
    x[3] = np.nan
    with pytest.raises(AudioError, match=r"ndarray of shape \(8000,\).*NaN"):
        load_audio(x, sample_rate=16000)


def test_too_short_for_one_frame(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _sine(440, 16000, 0.02), 16000)  # 320 samples < 400
    with pytest.raises(AudioError, match="shorter than one 25 ms frame") as e:
        load_audio(path)
    assert str(path) in str(e.value)
    # decided after resampling: 200 samples at 8 kHz are 400 at 16 kHz, exactly one frame
    assert load_audio(_sine(440, 8000, 0.025), sample_rate=8000).numel() == 400
    with pytest.raises(AudioError, match="shorter than one 25 ms frame"):
        load_audio(_sine(440, 8000, 0.024), sample_rate=8000)


def test_empty_array():
    with pytest.raises(AudioError, match="no samples"):
        load_audio(np.zeros(0, dtype=np.float32), sample_rate=16000)


@pytest.mark.parametrize("rate", [0, -16000, 0.0, float("nan"), 16000.5])
def test_bad_sample_rate(rate):
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(_sine(440, 16000, 0.5), sample_rate=rate)


def test_bad_target_rate():
    with pytest.raises(AudioError, match="target_sr"):
        load_audio(_sine(440, 16000, 0.5), sample_rate=16000, target_sr=0)


def test_array_without_sample_rate():
    with pytest.raises(AudioError, match="needs its sample_rate"):
        load_audio(torch.zeros(16000))


def test_path_with_conflicting_sample_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 22050, 0.5), 22050)
    assert load_audio(path, sample_rate=22050).numel() == 8000  # matching rate is fine
    with pytest.raises(AudioError, match="22050 Hz but sample_rate=16000") as e:
        load_audio(path, sample_rate=16000)
    assert str(path) in str(e.value)


def test_unsupported_source_and_dtype():
    with pytest.raises(AudioError, match="source"):
        load_audio([0.0] * 16000, sample_rate=16000)
    with pytest.raises(AudioError, match="unsupported sample type"):
        load_audio(np.zeros(16000, dtype=np.complex64), sample_rate=16000)
    with pytest.raises(AudioError, match="1-D or 2-D"):
        load_audio(np.zeros((2, 2, 16000), dtype=np.float32), sample_rate=16000)


def test_pad_short_zero_pads_a_click_to_one_frame():
    click = np.full(100, 0.5, dtype=np.float32)
    with pytest.raises(AudioError, match="shorter than one"):
        load_audio(click, sample_rate=16000)
    padded = load_audio(click, sample_rate=16000, pad_short=True)
    assert padded.shape == (400,)
    assert torch.all(padded[:100] == 0.5) and torch.all(padded[100:] == 0)
