"""Shared helpers for the CLI adversarial tests: run a command expecting the one-line error, and
small inputs (bad audio, a tiny encoder, a tiny pretraining run's arguments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ssamba.cli import main

#: A pretraining run small enough for a unit test (2 layers of width 32, 0.64 s crops, batch 2).
TINY_PRETRAIN = ["model.overrides.depth=2", "model.overrides.embed_dim=32", "data.crop_frames=64",
                 "train.batch_size=2", "train.num_workers=0", "train.num_threads=1", "train.progress=false",
                 "train.tensorboard=false", "train.warmup_steps=1", "train.checkpoint_every=1"]


def run_expecting_error(capsys, argv: list[str]) -> str:
    """Run ``ssamba argv``; assert exit status 2, one ``ssamba CMD: error:`` line, no traceback; return the line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    # progress lines (tqdm, "[demo] ...") may precede it; the error itself is one line
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("ssamba ") and " error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def write_tone(path: Path, seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> Path:
    """A short sine clip (a valid audio file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def bad_audio_dir(root: Path) -> Path:
    """A folder whose only audio files are a zero-byte, a corrupt and an all-NaN one."""
    root.mkdir(parents=True)
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00not audio at all")
    sf.write(root / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return root


def sparse_hour_wav(path: Path, rate: int = 16000) -> Path:
    """A valid 1-hour mono int16 WAV of silence, made in microseconds: a 44-byte header, then the
    file is extended with ``truncate`` (a sparse file: no data blocks written)."""
    frames = 3600 * rate
    data_bytes = 2 * frames
    header = (b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
              + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
              + (2 * rate).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
              + b"data" + data_bytes.to_bytes(4, "little"))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    return path
