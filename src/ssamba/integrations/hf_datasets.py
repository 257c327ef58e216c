"""A Hugging Face ``datasets`` dataset as a ssamba data source (``pip install 'ssamba[datasets]'``).

Address: ``hf-dataset:PATH_OR_ID[?key=value&...]``, where ``PATH_OR_ID`` is a folder written by
``save_to_disk`` or a Hub dataset id (``load_dataset``), and the optional keys are
``audio=COLUMN`` (default: the one ``Audio`` column), ``label=COLUMN`` (default: ``label``, else the
one ``ClassLabel`` column), ``train=`` / ``valid=`` / ``test=SPLIT`` (defaults: ``train``;
``validation``, ``valid`` or ``dev``; ``test``), ``fold=COLUMN`` (cross-validation folds),
``config=NAME`` (a Hub dataset's configuration) and ``skip_errors=1``.

``read_hf_dataset`` returns the same ``Manifest`` the folder and CSV readers return; its items
carry the row (``AudioItem.audio``) instead of a file, so fine-tuning, probing and evaluation run
unchanged. Labels: ``ClassLabel`` names, strings (classes sorted, as the CSV reader sorts them),
integers (class ``i`` named ``"i"``), or lists of these (multi-label). Audio is read without
``datasets``' own decoding (it needs torchcodec and FFmpeg): the column is cast to
``Audio(decode=False)`` and each row's bytes (or file) are decoded by soundfile, mixed to mono and
resampled to 16 kHz by ssamba's loader. Every row's header is checked when the dataset is read, so
an undecodable row stops the run before training, in one line naming the dataset, split, column
and row (or, with ``skip_errors``, is left out and listed in ``Manifest.skipped``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import soundfile as sf
import torch

from ssamba.audio import load_audio, read_samples
from ssamba.data.manifests import SPLITS, AudioItem, DatasetSpec, Manifest
from ssamba.errors import AudioError, DataError

PREFIX = "hf-dataset:"
DEFAULT_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}
OPTIONS = ("audio", "label", "fold", "config", "skip_errors", *SPLITS)


@dataclass(frozen=True)
class HfSource:
    """A parsed ``hf-dataset:`` address (see the module docstring)."""

    dataset: str
    audio: str | None = None
    label: str | None = None
    fold: str | None = None
    config: str | None = None
    splits: dict = field(default_factory=dict)     # ssamba split -> the dataset's split name
    skip_errors: bool = False

    def __str__(self) -> str:
        return PREFIX + self.dataset


def is_hf_source(data: object) -> bool:
    """Whether ``data`` (a ``--data`` argument) is an ``hf-dataset:`` address."""
    return isinstance(data, str) and data.startswith(PREFIX)


def parse_source(text: str) -> HfSource:
    """``hf-dataset:PATH_OR_ID?key=value&...`` -> HfSource; an unknown key is a DataError."""
    if not is_hf_source(text):
        raise DataError(f"{text}: not an {PREFIX} address")
    body, _, query = text[len(PREFIX):].partition("?")
    if not body:
        raise DataError(f"{text}: no dataset path or Hub id after {PREFIX}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise DataError(f"{text}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    return HfSource(dataset=body, audio=options.get("audio"), label=options.get("label"), fold=options.get("fold"),
                    config=options.get("config"), splits={s: options[s] for s in SPLITS if options.get(s)},
                    skip_errors=options.get("skip_errors", "").lower() in ("1", "true", "yes"))


def open_splits(source: HfSource) -> dict:
    """The dataset's splits (name -> ``datasets.Dataset``): ``load_from_disk`` for a folder, else
    ``load_dataset`` from the Hub (through its cache; ``HF_HUB_OFFLINE`` is honoured)."""
    import datasets

    try:
        if Path(source.dataset).is_dir():
            loaded = datasets.load_from_disk(source.dataset)
        else:
            loaded = datasets.load_dataset(source.dataset, source.config)
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, DatasetNotFoundError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{source}: cannot open the dataset ({first})") from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        return dict(loaded)
    raise DataError(f"{source}: a streaming or iterable dataset; give a saved or downloadable one")


def choose_splits(source: HfSource, available: dict) -> dict[str, str]:
    """ssamba split -> the dataset's split: the ones named in the address (which must exist), else
    the defaults that exist. A dataset with one split and no ``fold`` column is all training data."""
    names = sorted(available)
    chosen = {}
    for split, wanted in source.splits.items():
        if wanted not in available:
            raise DataError(f"{source}: no split {wanted!r} ({split}); the dataset has {names}")
        chosen[split] = wanted
    for split, candidates in DEFAULT_SPLITS.items():
        if split not in chosen:
            found = next((c for c in candidates if c in available), None)
            if found is not None:
                chosen[split] = found
    if not chosen:
        raise DataError(f"{source}: none of its splits {names} is train/validation/test; name them, "
                        "e.g. ?train=NAME&test=NAME")
    return chosen


def find_audio_column(source: HfSource, features) -> str:
    from datasets import Audio

    if source.audio:
        if source.audio not in features:
            raise DataError(f"{source}: no column {source.audio!r} (columns: {sorted(features)})")
        return source.audio
    audio = [name for name, feature in features.items() if isinstance(feature, Audio)]
    if len(audio) != 1:
        raise DataError(f"{source}: {'no' if not audio else 'several'} Audio columns {audio}; "
                        "name one with ?audio=COLUMN")
    return audio[0]


def find_label_column(source: HfSource, features) -> str:
    from datasets import ClassLabel

    if source.label:
        if source.label not in features:
            raise DataError(f"{source}: no column {source.label!r} (columns: {sorted(features)})")
        return source.label
    if "label" in features:
        return "label"
    labels = [n for n, f in features.items() if isinstance(f, ClassLabel) or isinstance(_inner(f), ClassLabel)]
    if len(labels) != 1:
        raise DataError(f"{source}: no 'label' column and {len(labels)} ClassLabel columns; name one with ?label=COLUMN")
    return labels[0]


def _inner(feature):
    """The element feature of a list feature (``List``/``Sequence``), else None."""
    return getattr(feature, "feature", None)


def label_names(source: HfSource, column: str, feature, values: list) -> tuple[list[str], bool, bool]:
    """(class names, multi-label, whether values are names rather than indices) of a label column."""
    from datasets import ClassLabel, Value

    element = _inner(feature)
    multi = element is not None
    kind = element if multi else feature
    if isinstance(kind, ClassLabel):
        return list(kind.names), multi, False
    if isinstance(kind, Value) and kind.dtype in ("string", "large_string"):
        flat = {v for row in values for v in (row or [] if multi else [row]) if v is not None}
        return sorted(flat), multi, True
    if isinstance(kind, Value) and kind.dtype.startswith(("int", "uint")):
        flat = [v for row in values for v in (row or [] if multi else [row]) if v is not None]
        if flat and min(flat) < 0:
            raise DataError(f"{source}: column {column!r}: negative class index {min(flat)}")
        return [str(i) for i in range(max(flat) + 1 if flat else 0)], multi, False
    raise DataError(f"{source}: column {column!r} has {feature}; expected class labels "
                    "(ClassLabel, strings or integers, or lists of them)")


class RowAudio:
    """An item's audio: row ``row`` of ``column`` in ``dataset`` (bytes or a file), decoded on call
    to a mono float32 16 kHz waveform. Picklable, so DataLoader workers can decode rows.
    ``dataset`` should hold just that column (a row is read whole)."""

    def __init__(self, dataset, column: str, row: int, where: str) -> None:
        self.dataset, self.column, self.row, self.where = dataset, column, row, where

    def __call__(self) -> torch.Tensor:
        return decode_audio(self.dataset[self.row][self.column], self.where)


def _payload(value, where: str):
    """What soundfile reads for an ``Audio(decode=False)`` value: its bytes, else its file."""
    if isinstance(value, dict) and value.get("bytes"):
        return io.BytesIO(value["bytes"])
    if isinstance(value, dict) and value.get("path") and os.path.isfile(value["path"]):
        return value["path"]
    raise DataError(f"{where}: no audio bytes and no readable file "
                    f"({value.get('path') if isinstance(value, dict) else type(value).__name__})")


def check_audio(value, where: str) -> None:
    """Read the header only: an undecodable row is a DataError naming it."""
    try:
        info = sf.info(_payload(value, where))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{where}: not a readable audio file ({_first_line(exc)})") from None
    if info.frames == 0:
        raise DataError(f"{where}: contains no samples")


def decode_audio(value, where: str, pad_short: bool = False) -> torch.Tensor:
    """Decode a row's audio as ssamba decodes a file: soundfile, mono mix, resampling to 16 kHz
    (``pad_short``: a clip shorter than one frame is padded, as pretraining reads files)."""
    try:
        samples, rate = read_samples(_payload(value, where), where)
    except AudioError as exc:   # names the row already
        raise DataError(str(exc)) from None
    try:
        return load_audio(samples, sample_rate=rate, pad_short=pad_short)
    except AudioError as exc:   # NaN samples, a clip too short
        raise DataError(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_hf_dataset(source: str | HfSource, skip_errors: bool | None = None, name: str | None = None,
                    feature_preset: str = "audioset", labels_required: bool = True) -> Manifest:
    """A ``Manifest`` of a ``datasets`` dataset (see the module docstring); ``skip_errors``
    overrides the address's option. Items of every chosen split, in row order, split by split.
    ``labels_required=False`` (embeddings): without a label column the items have no labels."""
    from datasets import Audio

    source = parse_source(source) if isinstance(source, str) else source
    skip = source.skip_errors if skip_errors is None else skip_errors
    available = open_splits(source)
    chosen = choose_splits(source, available)
    first = available[next(iter(chosen.values()))]
    audio_column = find_audio_column(source, first.features)
    try:
        label_column = find_label_column(source, first.features)
    except DataError:
        if labels_required or source.label:
            raise
        label_column = None
    tables = {}
    for split, split_name in chosen.items():
        table = available[split_name]
        for column in (audio_column, label_column, source.fold):
            if column and column not in table.features:
                raise DataError(f"{source}: split {split_name!r} has no column {column!r}")
        tables[split] = (split_name, table.cast_column(audio_column, Audio(decode=False)))
    audio_only = {split: table.select_columns([audio_column]) for split, (_, table) in tables.items()}
    if label_column is None:
        values = {split: [()] * len(table) for split, (_, table) in tables.items()}
        names, multi, by_name = [], False, False
    else:
        values = {split: table[label_column] for split, (_, table) in tables.items()}
        names, multi, by_name = label_names(source, label_column, first.features[label_column],
                                           [v for column in values.values() for v in column])
    index = {n: i for i, n in enumerate(names)}
    items, skipped = [], []
    one_split = len(tables) == 1 and source.fold is not None
    for split, (split_name, table) in tables.items():
        folds = table[source.fold] if source.fold else None
        for row, audio in enumerate(_column(table, audio_column)):
            where = f"{source} [{split_name}] column {audio_column!r} row {row}"
            label = values[split][row]
            try:
                labels = () if label_column is None else _label_indices(
                    label, multi, by_name, index, f"{source} [{split_name}] column {label_column!r} row {row}")
                check_audio(audio, where)
                fold = None if folds is None else int(folds[row])
            except (DataError, TypeError, ValueError) as exc:
                if not skip:
                    raise exc if isinstance(exc, DataError) else DataError(f"{where}: {exc}") from None
                skipped.append((where, str(exc)))
                continue
            items.append(AudioItem(path=Path(f"{source.dataset}[{split_name}][{row}]"), labels=labels,
                                   split=None if one_split else split, fold=fold,
                                   audio=RowAudio(audio_only[split], audio_column, row, where)))
    if not items:
        raise DataError(f"{source}: no readable rows")
    spec = DatasetSpec(name=name or Path(source.dataset.rstrip("/")).name, class_names=names, multi_label=multi,
                       splits=() if one_split else tuple(s for s in SPLITS if s in tables),
                       folds=tuple(sorted({i.fold for i in items if i.fold is not None})),
                       feature_preset=feature_preset)
    return Manifest(spec=spec, items=items, skipped=skipped)


def _column(table, column: str, batch_size: int = 256):
    """The values of one column, read in batches (a large audio column is not held whole)."""
    for batch in table.select_columns([column]).iter(batch_size=batch_size):
        yield from batch[column]


def _label_indices(label, multi: bool, by_name: bool, index: dict, where: str) -> tuple[int, ...]:
    values = label if multi else [label]
    if label is None or not values or any(v is None for v in values):
        raise DataError(f"{where}: empty label")
    if by_name:
        return tuple(index[v] for v in values)
    return tuple(int(v) for v in values)


def manifest_for(data: str | os.PathLike, skip_errors: bool = False) -> Manifest | None:
    """The CLI's hook: the Manifest of an ``hf-dataset:`` address, or None for any other ``--data``
    (which the commands' own readers take)."""
    if not is_hf_source(str(data)):
        return None
    return read_hf_dataset(str(data), skip_errors=skip_errors or None)
