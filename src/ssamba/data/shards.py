"""WebDataset tar shards for large corpora: a writer (folder -> shards) and a streaming reader.

Shards are plain WebDataset tars: each sample is ``<key>.<ext>`` holding the original encoded
audio bytes (flac, wav, ...), so any WebDataset tool can read them. The reader,
:class:`ShardStream`, is an ``IterableDataset`` that decodes and crops in DataLoader workers.
Its order is a function of ``(seed, epoch)``: shards are shuffled per epoch, split across ranks
(``torchrun``) and then across workers, and each clip's crop offset is seeded by
``(seed, epoch, shard, position)``; resuming replays the epoch up to the saved batch.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ssamba.data.audio_folder import AUDIO_EXTENSIONS, AudioCropDataset, list_audio
from ssamba.errors import DataError

SHARD_PATTERN = "shard-%06d.tar"


def _key(path: Path, root: Path) -> str:
    """A WebDataset key from a relative path: no dots (WebDataset splits key and extension at the first dot)."""
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return re.sub(r"[^A-Za-z0-9_/-]", "_", str(rel.with_suffix(""))).replace("/", "__")


def write_shards(source: str | Path, out_dir: str | Path, max_per_shard: int = 1000) -> list[Path]:
    """Pack the audio files of ``source`` (folder or manifest) into tar shards under ``out_dir``.

    Every file's header is checked first (an empty or non-audio file stops it, named). The shards
    are written into a hidden folder and moved into ``out_dir`` only when all are complete, so a
    failure (a full disk) leaves no shard a later run would read; an ``out_dir`` that already
    holds shards is refused rather than mixed with new ones."""
    import shutil
    import tempfile

    import webdataset as wds

    from ssamba.audio import audio_info
    from ssamba.checkpoints.format import named_os_error

    if max_per_shard < 1:
        raise DataError(f"max_per_shard={max_per_shard}: must be at least 1")
    source = Path(source)
    files = list_audio(source)
    root = source if source.is_dir() else source.parent
    out_dir = Path(out_dir)
    previous = sorted(out_dir.glob("shard-*.tar"))
    if previous:
        raise DataError(f"{out_dir}: holds a previous run ({previous[0].name}); remove it or choose another folder")
    keys: dict[str, Path] = {}
    for path in files:
        audio_info(path)  # AudioError naming the file when it is empty or not audio
        key = _key(path, root)
        if key in keys:
            raise DataError(f"{path}: two files map to the same shard key {key!r}")
        keys[key] = path
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".shards-", dir=out_dir))
    try:
        with wds.ShardWriter(str(staging / SHARD_PATTERN), maxcount=max_per_shard, verbose=0) as sink:
            for key, path in keys.items():
                sink.write({"__key__": key, path.suffix.lower().lstrip("."): path.read_bytes()})
        for shard in sorted(staging.glob("shard-*.tar")):
            shard.replace(out_dir / shard.name)
    except OSError as exc:  # a full disk: nothing was moved into out_dir
        named = named_os_error(exc, out_dir)
        if named is exc:
            raise
        raise named from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out_dir.glob("shard-*.tar"))


def list_shards(source: str | Path | list) -> list[Path]:
    """Shard files from a folder of ``*.tar`` or an explicit list."""
    if isinstance(source, (list, tuple)):
        shards = [Path(s) for s in source]
    else:
        source = Path(source)
        shards = sorted(source.glob("*.tar")) if source.is_dir() else [source]
    if not shards or not all(s.is_file() for s in shards):
        raise DataError(f"{source}: no WebDataset .tar shards found")
    return shards


class ShardStream(IterableDataset):
    """Streaming random crops from WebDataset shards as ``{"fbank": (T, F)}``; call ``set_epoch`` each epoch."""

    def __init__(self, shards, crop_frames: int = 1024, features=None, seed: int = 0, dynamic: bool = False) -> None:
        self.shards = list_shards(shards)
        self._crop = _Cropper(crop_frames, features, dynamic)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self) -> list[tuple[int, Path]]:
        import torch.distributed as dist

        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = [(int(i), self.shards[int(i)]) for i in torch.randperm(len(self.shards), generator=g)]
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        mine = order[rank::world]
        info = get_worker_info()
        if info is not None:
            mine = mine[info.id::info.num_workers]
        return mine

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        from ssamba.audio import load_audio
        from ssamba.data.seeding import item_seed

        for shard_index, path in self._my_shards():
            with path.open("rb") as stream:
                for position, sample in enumerate(group_by_keys(tar_file_expander([{"url": str(path), "stream": stream}]))):
                    ext = next((k for k in sample if "." + k in AUDIO_EXTENSIONS), None)
                    if ext is None:
                        raise DataError(f"{path}: sample {sample.get('__key__')!r} has no audio member")
                    wave = _decode(sample[ext], f"{path}:{sample['__key__']}.{ext}", load_audio)
                    seed = item_seed(self.seed, self.epoch, shard_index * 10_000_019 + position)
                    yield {"fbank": self._crop.fbank(wave, seed)}


class _Cropper(AudioCropDataset):
    """The crop + fbank part of AudioCropDataset without a file list."""

    def __init__(self, crop_frames: int, features, dynamic: bool = False) -> None:
        super().__init__([], crop_frames=crop_frames, features=features, dynamic=dynamic)


def _decode(data: bytes, name: str, load_audio) -> torch.Tensor:
    import soundfile as sf

    from ssamba.errors import AudioError

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{name}: not decodable audio ({type(exc).__name__})") from None
    return load_audio(samples, sample_rate=rate, pad_short=True)
