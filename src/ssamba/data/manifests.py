"""Generic dataset manifests: the record type every reader produces, the dataset description,
and readers for user-supplied data (a folder per label, or a CSV of path,label[,fold]).

A reader turns a directory on disk into a `Manifest` (a `DatasetSpec` plus a list of
`AudioItem`s). Nothing here loads audio; `ssamba.data.classification.AudioClassificationDataset`
does that. Every layout problem raises `DataError` with one line naming the path.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ssamba.audio.io import AUDIO_EXTENSIONS, list_audio_files
from ssamba.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class AudioItem:
    """One labelled clip.

    labels: class indices (one for single-label data, any number for multi-label).
    split:  "train" / "valid" / "test" where the dataset defines them, else None.
    fold:   cross-validation fold (ESC-50 fold 1-5, IEMOCAP session 1-5), else None.
    group:  who/what the clip belongs to (speaker, session, video id), else None.
    audio:  for items that are not files (a ``datasets`` row): a picklable zero-argument callable
            returning the mono 16 kHz waveform; ``path`` then only names the item.
    """

    path: Path
    labels: tuple[int, ...]
    split: str | None = None
    fold: int | None = None
    group: str | None = None
    audio: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> int:
        """The single class index of a single-label item."""
        if len(self.labels) != 1:
            raise DataError(f"{self.path}: item has {len(self.labels)} labels, expected exactly one")
        return self.labels[0]


@dataclass
class DatasetSpec:
    """What a dataset is: class names, single/multi-label, its splits/folds and which
    feature preset (`FeatureConfig.preset(name)`: "audioset", "esc50", "speechcommands") fits it."""

    name: str
    class_names: list[str]
    multi_label: bool = False
    splits: tuple[str, ...] = ()
    folds: tuple[int, ...] = ()
    feature_preset: str = "audioset"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self) -> dict[str, int]:
        """Class name -> index."""
        return {name: i for i, name in enumerate(self.class_names)}


@dataclass
class Manifest:
    """A dataset on disk: its spec, its items, extra noise clips (Speech Commands'
    `_background_noise_`) and the entries skipped while reading (path or id, reason)."""

    spec: DatasetSpec
    items: list[AudioItem]
    noise_paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def select(self, split: str | None = None, folds: Iterable[int] | None = None) -> list[AudioItem]:
        """Items of one split and/or of the given folds."""
        if split is not None and split not in self.spec.splits:
            raise DataError(f"{self.spec.name}: unknown split {split!r}; this dataset has {list(self.spec.splits)}")
        keep_folds = None if folds is None else set(folds)
        return [
            item
            for item in self.items
            if (split is None or item.split == split) and (keep_folds is None or item.fold in keep_folds)
        ]

    def fold_split(self, test_fold: int) -> tuple[list[AudioItem], list[AudioItem]]:
        """Cross-validation: (items of all other folds, items of `test_fold`)."""
        if test_fold not in self.spec.folds:
            raise DataError(f"{self.spec.name}: unknown fold {test_fold!r}; this dataset has {list(self.spec.folds)}")
        train = [item for item in self.items if item.fold != test_fold]
        test = [item for item in self.items if item.fold == test_fold]
        return train, test

    def label_counts(self, items: Sequence[AudioItem] | None = None) -> dict[str, int]:
        """Class name -> number of items carrying that label."""
        counts = Counter(label for item in (self.items if items is None else items) for label in item.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.spec.class_names)}


# ----------------------------------------------------------------------------- checks


def require_dir(path: Path, what: str) -> Path:
    """`path` as a Path, or DataError if it is not a directory."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: {what} directory not found")
    return path


def require_file(path: Path, what: str) -> Path:
    """`path` as a Path, or DataError if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path


audio_files = list_audio_files


# ----------------------------------------------------------------------------- folder per label


def read_folder_per_label(root: str | Path, name: str | None = None, feature_preset: str = "audioset") -> Manifest:
    """Read `root/<label>/**/*.wav` (classes sorted by name), or `root/{train,valid,test}/<label>/...`
    when the top-level folders are split names. An empty class folder is an error."""
    root = require_dir(Path(root), "dataset")
    top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not top:
        raise DataError(f"{root}: no class folders (expected <root>/<label>/*.wav)")
    split_dirs = [p for p in top if p.name in SPLITS]
    if split_dirs and len(split_dirs) == len(top):
        layout = [(p.name, p) for p in split_dirs]
    elif split_dirs:
        raise DataError(f"{root}: mixes split folders {[p.name for p in split_dirs]} with class folders")
    else:
        layout = [(None, root)]

    class_dirs: dict[str, list[tuple[str | None, Path]]] = {}
    for split, base in layout:
        dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DataError(f"{base}: no class folders (expected {base}/<label>/*.wav)")
        for d in dirs:
            class_dirs.setdefault(d.name, []).append((split, d))
    class_names = sorted(class_dirs)
    items: list[AudioItem] = []
    for index, label in enumerate(class_names):
        for split, d in class_dirs[label]:
            files = audio_files(d)
            if not files:
                raise DataError(f"{d}: empty class folder (no {'/'.join(AUDIO_EXTENSIONS)} files)")
            items.extend(AudioItem(path=f, labels=(index,), split=split) for f in files)
    spec = DatasetSpec(
        name=name or root.name,
        class_names=class_names,
        splits=tuple(s for s in SPLITS if any(split == s for split, _ in layout)),
        feature_preset=feature_preset,
    )
    return Manifest(spec=spec, items=items)


# ----------------------------------------------------------------------------- CSV


def read_csv_manifest(
    csv_path: str | Path,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
    feature_preset: str = "audioset",
    label_separator: str = ";",
) -> Manifest:
    """Read a CSV with header `path,label` plus optional `fold` and `split` columns.

    Paths are relative to the CSV's folder (or absolute). A label cell holding several names
    separated by `label_separator` makes the dataset multi-label. Without `class_names` the
    classes are the sorted set of labels seen; with it, a label outside it is an error.
    """
    csv_path = require_file(Path(csv_path), "manifest csv")
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for column in ("path", "label"):
            if column not in header:
                raise DataError(f"{csv_path}: missing column {column!r} (header is {header}, expected path,label[,fold][,split])")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DataError(f"{csv_path}: no rows")

    parsed = []
    for line, row in enumerate(rows, start=2):
        labels = [x.strip() for x in row["label"].split(label_separator) if x.strip()]
        if not labels:
            raise DataError(f"{csv_path}:{line}: empty label")
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        if not path.is_file():
            raise DataError(f"{csv_path}:{line}: audio file {path} not found")
        fold = None
        if row.get("fold"):
            try:
                fold = int(row["fold"])
            except ValueError:
                raise DataError(f"{csv_path}:{line}: fold {row['fold']!r} is not an integer") from None
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{csv_path}:{line}: split {split!r} is not one of {list(SPLITS)}")
        parsed.append((line, path, labels, fold, split))

    seen = sorted({label for _, _, labels, _, _ in parsed for label in labels})
    names = list(class_names) if class_names is not None else seen
    index = {n: i for i, n in enumerate(names)}
    items = []
    for line, path, labels, fold, split in parsed:
        for label in labels:
            if label not in index:
                raise DataError(f"{csv_path}:{line}: unknown label {label!r}")
        items.append(AudioItem(path=path, labels=tuple(index[label] for label in labels), split=split, fold=fold))
    spec = DatasetSpec(
        name=name or csv_path.stem,
        class_names=names,
        multi_label=any(len(item.labels) > 1 for item in items),
        splits=tuple(s for s in SPLITS if any(item.split == s for item in items)),
        folds=tuple(sorted({item.fold for item in items if item.fold is not None})),
        feature_preset=feature_preset,
    )
    return Manifest(spec=spec, items=items)
