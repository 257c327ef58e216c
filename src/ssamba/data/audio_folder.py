"""Unlabeled audio for pretraining: a folder or manifest of files, served as random fixed-length crops.

Every item is decoded and turned into a normalised fbank inside the DataLoader worker that asks
for it. Items are requested as ``(index, item_seed)`` pairs (see ``ssamba.train.distributed.EpochSampler``):
the crop offset depends only on ``item_seed``, so the data a run sees is a function of its seed
and resumes exactly. Clips shorter than the crop are zero-padded (as the official pipeline does).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ssamba.audio.io import AUDIO_EXTENSIONS, list_audio_files
from ssamba.errors import DataError
from ssamba.features.fbank import samples_for_frames


def list_audio(source: str | Path) -> list[Path]:
    """Audio files of a folder (recursive, sorted) or a manifest.

    Manifests: ``.txt``/``.lst`` (one path per line), ``.csv`` (a ``path`` or ``wav`` column) or
    ``.json`` in the official SSAST layout ``{"data": [{"wav": path}, ...]}``; relative paths are
    taken relative to the manifest's folder.
    """
    source = Path(source)
    if source.is_dir():
        files = list_audio_files(source)
        if not files:
            raise DataError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
        return files
    if not source.is_file():
        raise DataError(f"{source}: no such folder or manifest")
    suffix = source.suffix.lower()
    try:
        if suffix in (".txt", ".lst"):
            entries = [line.strip() for line in source.read_text().splitlines() if line.strip()]
        elif suffix == ".csv":
            with source.open(newline="") as f:
                rows = list(csv.DictReader(f))
            column = next((c for c in ("path", "wav", "file") if rows and c in rows[0]), None)
            if column is None:
                raise DataError(f"{source}: csv manifest needs a 'path' (or 'wav') column")
            entries = [r[column] for r in rows]
        elif suffix == ".json":
            entries = [d["wav"] for d in json.loads(source.read_text())["data"]]
        else:
            raise DataError(f"{source}: unknown manifest type (use a folder, .txt, .csv or .json)")
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None
    files = [p if p.is_absolute() else source.parent / p for p in map(Path, entries)]
    if not files:
        raise DataError(f"{source}: manifest lists no files")
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise DataError(f"{source}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
    return files


def crop_samples(frames: int) -> int:
    """Waveform samples that give exactly ``frames`` fbank frames (16 kHz, 25 ms / 10 ms)."""
    return samples_for_frames(frames)


def random_crop(wave: torch.Tensor, frames: int, item_seed: int) -> torch.Tensor:
    """A crop of ``wave`` long enough for ``frames`` frames at an offset drawn from ``item_seed``."""
    length = crop_samples(frames)
    if wave.shape[0] <= length:
        return wave
    g = torch.Generator().manual_seed(int(item_seed))
    start = int(torch.randint(wave.shape[0] - length + 1, (1,), generator=g))
    return wave[start:start + length]


class AudioCropDataset(Dataset):
    """Random ``crop_frames``-frame crops (default 1024 = 10.24 s) of audio files as ``{"fbank": (T, F)}``;
    with ``dynamic`` a shorter clip keeps its own frames (at least one patch) instead of being
    padded (batches then go through ``data.padding.pad_collate``)."""

    def __init__(self, files: list[Path] | str | Path, crop_frames: int = 1024, features=None,
                 dynamic: bool = False) -> None:
        from ssamba.features import FeatureConfig

        self.files = list_audio(files) if isinstance(files, (str, Path)) else [Path(f) for f in files]
        if crop_frames < 16:
            raise DataError(f"crop_frames={crop_frames}: must be at least one patch (16 frames)")
        self.crop_frames = int(crop_frames)
        self.dynamic = dynamic
        base = features if features is not None else FeatureConfig.preset("pretrain")
        if isinstance(base, str):
            base = FeatureConfig.preset(base)
        self.features = FeatureConfig.from_dict({**base.asdict(), "target_length": self.crop_frames})
        self._extractor = None

    def __len__(self) -> int:
        return len(self.files)

    def fbank(self, wave: torch.Tensor, item_seed: int) -> torch.Tensor:
        """Normalised fbank of a random crop of a 16 kHz waveform."""
        if self._extractor is None:  # built lazily, in the worker process
            from ssamba.features import FeatureExtractor
            self._extractor = FeatureExtractor(self.features)
        crop = random_crop(wave, self.crop_frames, item_seed)
        fbank = self._extractor(crop)
        if self.dynamic:
            from ssamba.data.padding import natural_frames
            fbank = fbank[:natural_frames(crop, self.features, self.crop_frames)]
        return fbank

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        from ssamba.audio import load_audio

        index, item_seed = key if isinstance(key, tuple) else (key, 0)
        return {"fbank": self.fbank(load_audio(self.files[index], pad_short=True), item_seed)}
