"""A small generated stand-in for the demo corpus: the four packages' own folder layouts and
file names, with synthetic audio in which every demo task is learnable (class-dependent pitch,
timbre and decay). Tests and `--corpus` smoke runs use it; nothing here touches the network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from ssamba.demo.corpus import DEFAULT_PACKAGES
from ssamba.errors import DataError

# Where each package keeps its audio (as `dpkg-deb -x` lays it out).
PACKAGE_AUDIO_DIRS = {
    "hedgewars-data": "usr/share/games/hedgewars/Data/Sounds/voices",
    "hydrogen-drumkits": "usr/share/hydrogen/data/drumkits",
    "tuxpaint-stamps-default": "usr/share/tuxpaint/stamps",
    "sonic-pi-samples": "usr/share/sonic-pi/samples",
}

# File-name styles per drum class, as the real kits spell them ("Kick-0", "BD_01", "hhclosed_01"...).
_SYNTH_DRUM_NAMES = {
    "kick": ("Kick", "BD", "bassdrum"),
    "snare": ("Snare", "SN", "sd"),
    "hihat": ("HiHatClosed", "hh", "CHH"),
    "tom": ("TomHigh", "TM", "floortom"),
    "cymbal": ("Crash", "RD", "ride"),
    "clap": ("HandClap", "clap", "Clap"),
    "perc": ("Cowbell", "Tambourine", "Conga"),
}


@dataclass
class SyntheticCorpusConfig:
    """Size of the generated corpus. `Default_ru` is a localised pack (left out of the word
    task); `Jump1`/`Jump2` are two takes of one word; `stamps_per_folder` stamps are described
    in every language."""

    packs: tuple[str, ...] = ("Default", "Pirate", "Robot", "Singer", "Surfer", "Mobster", "British", "Classic",
                              "Default_ru")
    words: tuple[str, ...] = ("Hello", "Boring", "Coward", "Incoming", "Victory", "Traitor", "Melon", "Oops",
                              "Jump1", "Jump2")
    kits: tuple[str, ...] = ("KitA", "KitB", "KitC", "KitD", "KitE")
    takes_per_drum: int = 3
    stamp_folders: tuple[str, ...] = ("animals/birds", "food/fruit", "vehicles/ship")
    stamps_per_folder: int = 4
    languages: tuple[str, ...] = ("fr", "ru", "es")
    sonic_samples: tuple[str, ...] = ("ambi_drone", "bd_boom", "elec_beep")
    sample_rate: int = 16000
    seed: int = 0


def _harmonic_voice(f0s: Sequence[float], formants: Sequence[float], rolloff: float, seconds: float,
                    sr: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced 'syllables': for each (f0, formant) a harmonic tone whose harmonics near the
    formant are loud, under a Hann envelope; then light noise."""
    pieces = []
    for f0, formant in zip(f0s, formants):
        t = np.arange(int(seconds * sr)) / sr
        k = np.arange(1, int(0.45 * sr / f0) + 1)[:, None]
        amp = k ** -rolloff * (0.2 + np.exp(-0.5 * ((k * f0 - formant) / 300.0) ** 2))
        tone = (amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi, size=k.shape))).sum(0)
        pieces.append(tone * np.hanning(len(t)))
    signal = np.concatenate(pieces)
    return signal + 0.01 * rng.standard_normal(len(signal))


def _drum_hit(kind: str, kit: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic drum hit whose spectrum and decay depend on the class (kit shifts them a little)."""
    t = np.arange(int(0.5 * sr)) / sr
    pitch, decay = 1.0 + 0.08 * (kit - 1.5), 1.0 + 0.1 * (kit % 2)
    noise = rng.standard_normal(len(t))
    highpassed = np.diff(noise, prepend=0.0)
    if kind == "kick":
        return np.sin(2 * np.pi * 55 * pitch * t * (1 + 2 * np.exp(-t * 30))) * np.exp(-t * 8 / decay)
    if kind == "snare":
        return (0.6 * noise + 0.5 * np.sin(2 * np.pi * 190 * pitch * t)) * np.exp(-t * 18 / decay)
    if kind == "hihat":
        return 0.5 * highpassed * np.exp(-t * 40 / decay)
    if kind == "tom":
        return np.sin(2 * np.pi * 130 * pitch * t) * np.exp(-t * 6 / decay)
    if kind == "cymbal":
        return 0.4 * highpassed * np.exp(-t * 3 / decay)
    if kind == "clap":
        bursts = sum(np.exp(-np.abs(t - d) * 200) for d in (0.0, 0.012, 0.024))
        return 0.6 * noise * bursts * np.exp(-t * 10 / decay)
    return np.sin(2 * np.pi * 800 * pitch * t) * np.sin(2 * np.pi * 540 * pitch * t) * np.exp(-t * 25 / decay)


def _write(path: Path, signal: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = (0.7 * signal / (np.abs(signal).max() + 1e-9)).astype(np.float32)
    formats = {".ogg": ("OGG", "VORBIS"), ".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "PCM_16")}
    fmt, subtype = formats[path.suffix]
    sf.write(str(path), signal, sr, format=fmt, subtype=subtype)


def write_synthetic_package(package: str, destination: str | Path, config: SyntheticCorpusConfig | None = None) -> None:
    """Write the generated audio of one package under `destination` as `dpkg-deb -x` would
    (same folders, same file naming), plus a non-audio file that unpacking must prune."""
    cfg = config or SyntheticCorpusConfig()
    if package not in PACKAGE_AUDIO_DIRS:
        raise DataError(f"no synthetic layout for package {package!r}; known: {sorted(PACKAGE_AUDIO_DIRS)}")
    sr = cfg.sample_rate
    base = Path(destination) / PACKAGE_AUDIO_DIRS[package]
    rng = np.random.default_rng([cfg.seed, sorted(PACKAGE_AUDIO_DIRS).index(package)])
    (Path(destination) / "usr/share/doc" / package).mkdir(parents=True, exist_ok=True)
    (Path(destination) / "usr/share/doc" / package / "copyright").write_text("generated test data\n")
    if package == "hedgewars-data":
        for p, pack in enumerate(cfg.packs):
            for w, word in enumerate(cfg.words):
                w = cfg.words.index(word.rstrip("0123456789") + "1") if word[-1].isdigit() else w
                # pack: pitch and brightness; word: syllable count, length and formants
                f0 = 100 * 1.12 ** p * rng.uniform(0.98, 1.02)
                contour = [1.0, 1.25, 0.85][: 1 + w % 3]
                formants = [600 + 450 * ((w + 2 * s) % 6) for s in range(len(contour))]
                syllable = 0.12 + 0.04 * (w % 4)
                audio = _harmonic_voice([f0 * c for c in contour], formants, 0.3 + 0.15 * p, syllable, sr, rng)
                _write(base / pack / f"{word}.ogg", audio, sr)
    elif package == "hydrogen-drumkits":
        for k, kit in enumerate(cfg.kits):
            for kind, names in _SYNTH_DRUM_NAMES.items():
                for take in range(cfg.takes_per_drum):
                    ext = (".wav", ".flac")[(k + take) % 2]
                    _write(base / kit / f"{names[k % len(names)]}-{take}{ext}", _drum_hit(kind, k, sr, rng), sr)
            # one sample only drumkit.xml names, one nothing maps (like "beats_01-10", "VP Click")
            _write(base / kit / "beats_01-10.flac", _drum_hit("kick", k, sr, rng), sr)
            _write(base / kit / "VP Click.flac", _drum_hit("perc", k, sr, rng), sr)
            (base / kit / "drumkit.xml").write_text(
                '<?xml version="1.0"?>\n<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
                f"<name>{kit}</name><instrumentList><instrument><name>c3 - bass drum 1</name>"
                "<layer><filename>beats_01-10.flac</filename></layer></instrument></instrumentList></drumkit_info>\n"
            )
    elif package == "tuxpaint-stamps-default":
        for folder in cfg.stamp_folders:
            for s in range(cfg.stamps_per_folder):
                stamp = f"{folder.rsplit('/', 1)[-1]}{s}"
                syllables = rng.integers(0, 5, size=4)
                for lang_index, lang in enumerate(cfg.languages):
                    f0 = 110 * 1.35 ** lang_index
                    formants = [400 + 300 * ((v + lang_index) % 5) for v in syllables]
                    audio = _harmonic_voice([f0] * 4, formants, 0.7 + 0.25 * lang_index, 0.12 + 0.05 * lang_index, sr, rng)
                    _write(base / folder / f"{stamp}_desc_{lang}.ogg", audio, sr)
                (base / folder / f"{stamp}.txt").write_text(f"{stamp}\n")
    else:
        for name in cfg.sonic_samples:
            t = np.arange(int(0.8 * sr)) / sr
            _write(base / f"{name}.flac", np.sin(2 * np.pi * rng.uniform(80, 900) * t * (1 + t)) * np.exp(-t * 2), sr)


def make_synthetic_corpus(directory: str | Path, config: SyntheticCorpusConfig | None = None,
                          packages: Sequence[str] = DEFAULT_PACKAGES) -> Path:
    """Write a small generated corpus, `directory/<package>/<the package's own paths>`, in
    which every demo task is learnable (class-dependent pitch, timbre, decay). Returns
    `directory`; read it with `load_corpus_dir`."""
    root = Path(directory)
    for package in packages:
        write_synthetic_package(package, root / package, config)
    return root
