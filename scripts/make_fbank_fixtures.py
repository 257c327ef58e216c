"""Generate tests/fixtures/fbank/reference.npz: Kaldi fbank reference features for parity tests.

The reference is torchaudio 2.11.0's ``torchaudio/compliance/kaldi.py`` (a single pure-torch
file; SSAMBA's official code used its 2.2.2 version, unchanged since). torchaudio is NOT a
dependency of ssamba and must not be installed into the project's .venv (its wheel pins a
different torch), so this script imports that one file from an unpacked wheel with a stub
``torchaudio`` module (kaldi.py only needs torchaudio for MFCC's DCT, which is not used).

How the committed fixture was produced (CPU, torch 2.13.0+cpu from the project .venv):

    pip download --no-deps torchaudio==2.11.0 -d /tmp/ta
    unzip -o /tmp/ta/torchaudio-2.11.0-*.whl 'torchaudio/compliance/*' -d /tmp/ta/x
    .venv/bin/python scripts/make_fbank_fixtures.py \
        --kaldi-py /tmp/ta/x/torchaudio/compliance/kaldi.py

The signals are generated deterministically here and stored in the .npz next to the
reference features, so the tests need neither this script nor torchaudio. The inputs
of the stereo and 8 kHz cases are stored as they enter ``ssamba.audio.load_audio``; the
features were computed on what load_audio's mixing / ``resample`` produce from them
(the mono mix and the resampled wave are stored too).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from ssamba.audio import resample

SR = 16000
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fbank" / "reference.npz"

# name -> options passed to the reference kaldi.fbank on top of the SSAMBA call
# (htk_compat=True, use_energy=False, dither=0, frame_shift=10, num_mel_bins=128, hanning).
VARIANTS: dict[str, dict] = {
    "log_hanning": {},
    "power_hanning": {"use_log_fbank": False},
    "log_povey": {"window_type": "povey"},
    "log_hamming": {"window_type": "hamming"},
    "log_hanning_40bins": {"num_mel_bins": 40},
}
# Less common options, checked on the speech-like signal only (keeps the fixture small).
EXTRA_VARIANTS: dict[str, dict] = {
    "log_blackman_energy_first_no_snip": {
        "window_type": "blackman", "use_energy": True, "htk_compat": False, "snip_edges": False,
    },
    "log_povey_23bins_raw_energy_off": {
        "window_type": "povey", "num_mel_bins": 23, "use_energy": True, "raw_energy": False,
        "energy_floor": 0.0, "low_freq": 60.0, "high_freq": -400.0,
    },
}


def load_reference(kaldi_py: Path) -> types.ModuleType:
    """Import torchaudio's kaldi.py on its own, with a stub ``torchaudio`` package."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    spec = importlib.util.spec_from_file_location("reference_kaldi", kaldi_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def white_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


def chirp(n: int, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    return (0.5 * scipy.signal.chirp(t, f0=50.0, t1=t[-1], f1=0.49 * sr, method="logarithmic")).astype(np.float32)


def speech_like(rng: np.random.Generator, n: int, sr: int = SR) -> np.ndarray:
    """Voiced-speech caricature: gliding f0 harmonics through three formant resonators,
    amplitude-modulated at a syllable rate of 4 Hz, plus a little aspiration noise."""
    t = np.arange(n) / sr
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t)  # Hz
    phase = 2 * np.pi * np.cumsum(f0) / sr
    source = sum(np.sin(k * phase) / k for k in range(1, int(0.45 * sr / 170)))
    source = source + 0.05 * rng.standard_normal(n)
    voice = source
    for freq, bandwidth in ((700.0, 80.0), (1220.0, 90.0), (2600.0, 120.0)):
        radius = np.exp(-np.pi * bandwidth / sr)
        poles = [1.0, -2 * radius * np.cos(2 * np.pi * freq / sr), radius**2]
        voice = voice + scipy.signal.lfilter([1.0 - radius], poles, source)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    voice = voice * envelope
    return (0.5 * voice / np.abs(voice).max()).astype(np.float32)


def make_inputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Stored inputs, and the 16 kHz mono waves the reference features are computed on.

    Lengths are deliberately not multiples of the 160-sample hop."""
    rng = np.random.default_rng(20240517)
    inputs: dict[str, np.ndarray] = {
        "noise": white_noise(rng, 8037),
        "chirp": chirp(11123),
        "speech": speech_like(rng, 12859),
    }
    stereo = np.stack([speech_like(rng, 9001), chirp(9001)[::-1]], axis=1)  # (samples, channels)
    inputs["stereo_pcm16"] = np.round(stereo * 32767).astype(np.int16)
    inputs["speech_8k"] = speech_like(rng, 4801, sr=8000)

    waves = {name: inputs[name] for name in ("noise", "chirp", "speech")}
    # load_audio reads a PCM_16 wav as int/32768 and averages the channels
    waves["stereo_pcm16"] = (inputs["stereo_pcm16"].astype(np.float32) / 32768.0).mean(
        axis=1, dtype=np.float64).astype(np.float32)
    waves["speech_8k"] = resample(inputs["speech_8k"], 8000, SR)  # the call load_audio makes
    return inputs, waves


def reference_fbank(kaldi: types.ModuleType, wave: np.ndarray, options: dict) -> np.ndarray:
    call = {"htk_compat": True, "sample_frequency": SR, "use_energy": False, "window_type": "hanning",
            "num_mel_bins": 128, "dither": 0.0, "frame_shift": 10, **options}
    with torch.no_grad():
        return kaldi.fbank(torch.from_numpy(wave)[None], **call).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kaldi-py", type=Path, required=True, help="torchaudio/compliance/kaldi.py from the wheel")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    kaldi = load_reference(args.kaldi_py)
    inputs, waves = make_inputs()
    arrays: dict[str, np.ndarray] = {}
    for name, data in inputs.items():
        arrays[f"{name}__input"] = data
    arrays["stereo_pcm16__mono"] = waves["stereo_pcm16"]
    arrays["speech_8k__resampled"] = waves["speech_8k"]
    for name, wave in waves.items():
        for variant, options in VARIANTS.items():
            arrays[f"{name}__{variant}"] = reference_fbank(kaldi, wave, options)
    for variant, options in EXTRA_VARIANTS.items():
        arrays[f"speech__{variant}"] = reference_fbank(kaldi, waves["speech"], options)

    meta = {
        "reference": "torchaudio 2.11.0 torchaudio/compliance/kaldi.py fbank (stub torchaudio import)",
        "kaldi_py_sha256": hashlib.sha256(args.kaldi_py.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sample_rate": SR,
        "base_call": "fbank(wave[None], htk_compat=True, sample_frequency=16000, use_energy=False, "
                     "window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)",
        "variants": {**VARIANTS, **{f"speech only: {k}": v for k, v in EXTRA_VARIANTS.items()}},
        "input_rates": {"speech_8k": 8000, "default": SR},
    }
    arrays["meta"] = np.array(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
