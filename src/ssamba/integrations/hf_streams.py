"""``datasets`` sources that are not labelled manifests: a stream of random crops for
pretraining (``ssamba pretrain --data hf-dataset:...``), and embeddings of every row
(``ssamba embed --model M hf-dataset:...``). Addresses and decoding as in ``hf_datasets``.

The stream reads rows as they come (``load_dataset(..., streaming=True)`` for a Hub id, a saved
folder as an iterable dataset), in an order shuffled per epoch (``seed``, ``set_epoch``), each
process and DataLoader worker taking every n-th row; crops are drawn from (seed, epoch, position)
like the shard stream's, so a run is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ssamba.data.audio_folder import AudioCropDataset
from ssamba.data.seeding import item_seed
from ssamba.errors import DataError
from ssamba.inference import FileEmbeddings, embed_files
from ssamba.integrations.hf_datasets import (
    PREFIX,
    HfSource,
    decode_audio,
    find_audio_column,
    parse_source,
    read_hf_dataset,
)

SHUFFLE_BUFFER = 1000


class HfCropStream(IterableDataset):
    """Random ``crop_frames``-frame crops of a dataset's training split as ``{"fbank": (T, F)}``."""

    def __init__(self, source: str | HfSource, crop_frames: int = 1024, features=None, seed: int = 0) -> None:
        self.source = parse_source(source) if isinstance(source, str) else source
        self._crop = AudioCropDataset([], crop_frames=crop_frames, features=features)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def open(self):
        """(the training split as a datasets ``IterableDataset`` of audio values, its name)."""
        import datasets

        source = self.source
        split = source.splits.get("train", "train")
        try:
            if Path(source.dataset).is_dir():
                loaded = datasets.load_from_disk(source.dataset)
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise DataError(f"{source}: no split {split!r}; the dataset has {sorted(loaded)}")
                    loaded = loaded[split]
                rows = loaded.to_iterable_dataset(num_shards=max(1, min(64, len(loaded))))
            else:
                rows = datasets.load_dataset(source.dataset, source.config, split=split, streaming=True)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{source}: cannot open split {split!r} ({str(exc).strip().splitlines()[0]})") from None
        column = find_audio_column(source, rows.features) if rows.features is not None or not source.audio \
            else source.audio
        rows = rows.cast_column(column, datasets.Audio(decode=False)).select_columns([column])
        return rows.shuffle(seed=self.seed, buffer_size=SHUFFLE_BUFFER), column, split

    def _share(self) -> tuple[int, int]:
        """(this reader's index, how many readers): processes x DataLoader workers."""
        import torch.distributed as dist

        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() \
            else (0, 1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def __iter__(self):
        rows, column, split = self.open()
        rows.set_epoch(self.epoch)
        mine, readers = self._share()
        for position, row in enumerate(rows):
            if position % readers != mine:
                continue
            where = f"{self.source} [{split}] column {column!r} row {position} of epoch {self.epoch}'s order"
            try:
                wave = decode_audio(row[column], where, pad_short=True)
            except DataError:
                if self.source.skip_errors:
                    continue
                raise
            yield {"fbank": self._crop.fbank(wave, item_seed(self.seed, self.epoch, position))}


def build_pretraining_data(data: str, config, seed: int) -> HfCropStream:
    """The pretraining data of an ``hf-dataset:`` address (``pretrain.run.SOURCE_BUILDERS``)."""
    return HfCropStream(data, crop_frames=config.crop_frames, features=config.features, seed=seed)


def register_pretraining_source() -> None:
    """Let ``run_pretraining`` read ``hf-dataset:`` addresses."""
    from ssamba.pretrain.run import SOURCE_BUILDERS

    SOURCE_BUILDERS[PREFIX] = build_pretraining_data


def embed_hf_dataset(source: str, model, timestamps: bool = False, batch_size: int = 8, device: str | None = None,
                     dtype: torch.dtype = torch.float32, skip_errors: bool = False, chunk: int = 64,
                     layers=None, pooling: str = "mean") -> FileEmbeddings:
    """Embeddings of every row of the chosen splits (all of a dataset's train/validation/test), in
    order; ``files`` names each row ``PATH[split][row]``. Labels are not needed: a dataset without
    a label column reads too. Undecodable rows raise unless ``skip_errors`` (then listed in ``skipped``)."""
    manifest = read_hf_dataset(source, skip_errors=skip_errors, labels_required=False)
    audio_of = {item.path: item.audio for item in manifest.items}
    result = embed_files(list(audio_of), model, timestamps=timestamps, batch_size=batch_size, device=device,
                         dtype=dtype, skip_errors=skip_errors, chunk=chunk, progress=False, layers=layers,
                         pooling=pooling, read=lambda path: audio_of[path]())
    result.skipped = [(Path(where), why) for where, why in manifest.skipped] + result.skipped
    return result
