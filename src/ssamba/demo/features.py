"""Normalised fbanks of every demo clip, computed once and cached on disk.

Every stage of the demo reads the same features: pretraining crops, the log-mel baseline and the
encoders' embeddings. Decoding ogg/flac and computing the Kaldi fbank is the slow part of
reading audio, so it happens once per corpus (two worker processes, one torch thread each) and
is stored as float16 in ``<cache>/fbank-<fingerprint>.npz``; a re-run with the same files,
feature preset and length cap loads it in a second.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssamba.checkpoints.format import atomic_write
from ssamba.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FbankStore:
    """Normalised (frames, bins) fbanks of a list of files, in that order (float16 in memory)."""

    paths: list[Path]
    fbanks: list[np.ndarray]
    feature_config: dict
    pad_value: float  # what a padded frame holds after normalisation: -mean / (2 * std)

    def index(self) -> dict[Path, int]:
        return {p: i for i, p in enumerate(self.paths)}

    def take(self, paths: Sequence[Path]) -> list[np.ndarray]:
        """The fbanks of `paths` (each must be in the store)."""
        where = self.index()
        return [self.fbanks[where[Path(p)]] for p in paths]

    @property
    def total_frames(self) -> int:
        return int(sum(len(f) for f in self.fbanks))


def _extract(job: tuple[str, dict, int]) -> np.ndarray:
    """Worker: one file -> normalised fbank (first `max_frames` frames), float16."""
    from ssamba.audio import load_audio
    from ssamba.features import FeatureConfig, FeatureExtractor

    path, config, max_frames = job
    torch.set_num_threads(1)
    extractor = FeatureExtractor(FeatureConfig.from_dict(config))
    wave = load_audio(path)
    max_samples = (max_frames - 1) * 160 + 400
    fbank = extractor(wave[:max_samples])
    return fbank.numpy().astype(np.float16)


def compute_fbanks(paths: Sequence[Path], cache_dir: str | Path | None, preset: str = "pretrain",
                   max_seconds: float = 10.0, workers: int = 2) -> FbankStore:
    """Normalised fbank (natural length, at most `max_seconds`) of each file; cached under `cache_dir`."""
    from ssamba.downstream.probe import fingerprint
    from ssamba.features import FeatureConfig

    if not paths:
        raise DataError("compute_fbanks: no audio files given")
    feature_config = dataclasses.replace(FeatureConfig.preset(preset), target_length=None)
    config = feature_config.asdict()
    max_frames = int(round(max_seconds * 100))
    paths = [Path(p).resolve() for p in paths]
    key = fingerprint([(str(p), p.stat().st_size) for p in paths], config, max_frames)
    cache = Path(cache_dir) / f"fbank-{key}.npz" if cache_dir is not None else None
    pad_value = feature_config.pad_value
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as data:
                flat, offsets = data["frames"], data["offsets"]
            fbanks = [flat[offsets[i]:offsets[i + 1]] for i in range(len(paths))]
            log.info("fbanks of %d files loaded from %s", len(paths), cache)
            return FbankStore(paths, fbanks, config, pad_value)
        except (OSError, KeyError, ValueError, IndexError):
            log.warning("%s: unreadable fbank cache, recomputing", cache)
    jobs = [(str(p), config, max_frames) for p in paths]
    try:
        if workers > 1 and len(jobs) > 8:
            with ProcessPoolExecutor(workers) as pool:
                fbanks = list(pool.map(_extract, jobs, chunksize=16))
        else:
            fbanks = [_extract(job) for job in jobs]
    except Exception as err:  # AudioError from a worker keeps its message
        raise DataError(f"computing fbanks: {err}") from err
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(f) for f in fbanks])
        frames = np.concatenate(fbanks)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, frames=frames, offsets=offsets)

        atomic_write(cache, write)
    return FbankStore(paths, fbanks, config, pad_value)


def pad_to(fbank: np.ndarray | torch.Tensor, frames: int, pad_value: float) -> torch.Tensor:
    """(frames, bins) float32: `fbank` cut or padded at the end with `pad_value` (the official
    pipeline pads before normalising, so padded frames hold -mean / (2 * std))."""
    x = torch.as_tensor(np.asarray(fbank, dtype=np.float32))
    if len(x) >= frames:
        return x[:frames]
    return torch.cat([x, x.new_full((frames - len(x), x.shape[1]), pad_value)])


class FbankCropDataset(Dataset):
    """Pretraining items from an `FbankStore`: a `crop_frames` crop of clip `index` at an offset
    drawn from `item_seed` (the Trainer's `(index, item_seed)` keys), as `{"fbank": (T, F)}`."""

    def __init__(self, fbanks: Sequence[np.ndarray], crop_frames: int, pad_value: float) -> None:
        if not fbanks:
            raise DataError("pretraining: no clips")
        self.fbanks, self.crop_frames, self.pad_value = list(fbanks), int(crop_frames), float(pad_value)

    def __len__(self) -> int:
        return len(self.fbanks)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, item_seed = key if isinstance(key, tuple) else (key, 0)
        clip = self.fbanks[index]
        spare = len(clip) - self.crop_frames
        start = 0
        if spare > 0:
            start = int(torch.randint(spare + 1, (1,), generator=torch.Generator().manual_seed(int(item_seed))))
        return {"fbank": pad_to(clip[start:start + self.crop_frames], self.crop_frames, self.pad_value)}
