"""Readers for the paper's downstream datasets in their official on-disk layouts (the torch
`Dataset` over their items is ``ssamba.data.classification.AudioClassificationDataset``).

Readers (each returns a `Manifest`, raises `DataError` naming the path when the layout is wrong):
- `read_esc50(root)`            root/meta/esc50.csv + root/audio/*.wav; 50 classes, folds 1-5.
- `read_speech_commands(root)`  root/<word>/*.wav, validation_list.txt, testing_list.txt;
                                V1 30 / V2 35 words; `_background_noise_` -> `Manifest.noise_paths`.
- `read_audioset(root)`         root/{balanced_train,eval}_segments.csv, class_labels_indices.csv,
                                audio under root/audio/ named by YouTube id (see `read_audioset`).
- `read_voxceleb1(root)`        root/iden_split.txt (1/2/3 = train/valid/test) + root/wav/idXXXXX/...
- `read_iemocap(root)`          root/Session1..5; 4 classes, excited merged into happy,
                                fold = session (leave-one-session-out).
- `read_dataset(name, root)`    one entry point by name (also "folder" and "csv"; "auto" detects).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable

from ssamba.data.manifests import (
    AudioItem,
    DatasetSpec,
    Manifest,
    audio_files,
    read_csv_manifest,
    read_folder_per_label,
    require_dir,
    require_file,
)
from ssamba.errors import DataError

# ----------------------------------------------------------------------------- ESC-50

ESC50_COLUMNS = ("filename", "fold", "target", "category")


def read_esc50(root: str | Path) -> Manifest:
    """ESC-50: `meta/esc50.csv` (filename,fold,target,category,...) and `audio/<filename>`.
    Class index = the csv's `target`; targets must be 0..K-1 (K = 50 for the full set)."""
    root = require_dir(Path(root), "ESC-50 root")
    csv_path = require_file(root / "meta" / "esc50.csv", "ESC-50 metadata csv")
    audio_dir = require_dir(root / "audio", "ESC-50 audio")
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ESC50_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path}: missing columns {missing} (expected {','.join(ESC50_COLUMNS)},...)")
        rows = list(reader)
    if not rows:
        raise DataError(f"{csv_path}: no rows")

    names: dict[int, str] = {}
    items = []
    for line, row in enumerate(rows, start=2):
        try:
            target, fold = int(row["target"]), int(row["fold"])
        except ValueError:
            raise DataError(f"{csv_path}:{line}: target/fold must be integers, got {row['target']!r}/{row['fold']!r}") from None
        if not 1 <= fold <= 5:
            raise DataError(f"{csv_path}:{line}: fold {fold} outside 1..5")
        if names.setdefault(target, row["category"]) != row["category"]:
            raise DataError(f"{csv_path}:{line}: unknown label: target {target} is {names[target]!r} elsewhere, "
                            f"{row['category']!r} here")
        path = audio_dir / row["filename"]
        if not path.is_file():
            raise DataError(f"{csv_path}:{line}: audio file {path} not found")
        items.append(AudioItem(path=path, labels=(target,), fold=fold, group=row.get("src_file") or None))
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{csv_path}: targets must be 0..{len(names) - 1}, got {sorted(names)}")
    spec = DatasetSpec(
        name="esc50",
        class_names=[names[i] for i in range(len(names))],
        folds=tuple(sorted({item.fold for item in items})),
        feature_preset="esc50",
    )
    return Manifest(spec=spec, items=items)


# ----------------------------------------------------------------------------- Speech Commands

SPEECH_COMMANDS_V1_WORDS = (
    "bed bird cat dog down eight five four go happy house left marvin nine no off on one "
    "right seven sheila six stop three tree two up wow yes zero"
).split()
SPEECH_COMMANDS_V2_WORDS = sorted(SPEECH_COMMANDS_V1_WORDS + ["backward", "follow", "forward", "learn", "visual"])
BACKGROUND_NOISE_DIR = "_background_noise_"


def read_speech_commands(root: str | Path, version: int | None = None) -> Manifest:
    """Speech Commands V1 (30 words) or V2 (35 words): `root/<word>/*.wav`, with
    `validation_list.txt` / `testing_list.txt` (paths relative to root) defining the valid/test
    splits and everything else train. Classes are the words sorted alphabetically.
    `version=None` infers V2 when any V2-only word folder exists. `_background_noise_` is not a
    class; its clips go to `Manifest.noise_paths` for noise augmentation."""
    root = require_dir(Path(root), "Speech Commands root")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != BACKGROUND_NOISE_DIR and not p.name.startswith("."))
    if version is None:
        version = 2 if set(found) & (set(SPEECH_COMMANDS_V2_WORDS) - set(SPEECH_COMMANDS_V1_WORDS)) else 1
    if version not in (1, 2):
        raise DataError(f"{root}: Speech Commands version must be 1 or 2, got {version}")
    words = SPEECH_COMMANDS_V1_WORDS if version == 1 else SPEECH_COMMANDS_V2_WORDS
    unknown = sorted(set(found) - set(words))
    if unknown:
        raise DataError(f"{root / unknown[0]}: unknown label folder for Speech Commands V{version} (unknown: {unknown})")
    missing = sorted(set(words) - set(found))
    if missing:
        raise DataError(f"{root}: missing word folders for Speech Commands V{version}: {missing}")

    split_of: dict[str, str] = {}
    for split, list_name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        list_path = require_file(root / list_name, "Speech Commands split list")
        for line_no, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            rel = line.strip()
            if not rel:
                continue
            if not (root / rel).is_file():
                raise DataError(f"{list_path}:{line_no}: listed file {root / rel} not found")
            split_of[Path(rel).as_posix()] = split

    items = []
    for index, word in enumerate(words):
        files = audio_files(root / word)
        if not files:
            raise DataError(f"{root / word}: empty class folder")
        for path in files:
            rel = path.relative_to(root).as_posix()
            speaker = path.stem.split("_nohash_")[0]
            items.append(AudioItem(path=path, labels=(index,), split=split_of.get(rel, "train"), group=speaker))
    noise_dir = root / BACKGROUND_NOISE_DIR
    noise = audio_files(noise_dir) if noise_dir.is_dir() else []
    spec = DatasetSpec(
        name=f"speechcommands_v{version}",
        class_names=list(words),
        splits=("train", "valid", "test"),
        feature_preset="speechcommands",
    )
    return Manifest(spec=spec, items=items, noise_paths=noise)


# ----------------------------------------------------------------------------- AudioSet

AUDIOSET_SEGMENT_FILES = {"train": "balanced_train_segments.csv", "test": "eval_segments.csv"}
AUDIOSET_UNBALANCED_FILE = "unbalanced_train_segments.csv"


def read_audioset_labels(csv_path: Path) -> tuple[list[str], list[str]]:
    """class_labels_indices.csv (`index,mid,display_name`) -> (mids, display names) by index."""
    csv_path = require_file(csv_path, "AudioSet class_labels_indices.csv")
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"index", "mid", "display_name"} <= set(reader.fieldnames or []):
            raise DataError(f"{csv_path}: expected header index,mid,display_name, got {reader.fieldnames}")
        rows = list(reader)
    try:
        indices = [int(r["index"]) for r in rows]
    except ValueError:
        raise DataError(f"{csv_path}: non-integer index") from None
    if indices != list(range(len(rows))) or not rows:
        raise DataError(f"{csv_path}: indices must be 0..N-1 in order")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


def read_audioset_segments(csv_path: Path) -> list[tuple[int, str, str, str, list[str]]]:
    """A segments csv -> [(line, ytid, start, end, label mids)]. Lines starting with '#' are the
    official header lines; a row is `YTID, start_seconds, end_seconds, "mid1,mid2,..."`."""
    csv_path = require_file(csv_path, "AudioSet segments csv")
    out = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 4:
                raise DataError(f"{csv_path}:{line}: expected 4 fields (YTID, start, end, \"labels\"), got {len(row)}")
            ytid, start, end, labels = (x.strip() for x in row)
            out.append((line, ytid, start, end, [m.strip() for m in labels.split(",") if m.strip()]))
    if not out:
        raise DataError(f"{csv_path}: no segments")
    return out


def _index_audioset_audio(audio_dir: Path) -> dict[str, Path]:
    """Map a YouTube id to its file. Accepted stems: `<YTID>`, `Y<YTID>`, `<YTID>_<anything>`
    and `Y<YTID>_<anything>` (e.g. `<YTID>_30.000_40.000`); YouTube ids are 11 characters."""
    exact: dict[str, Path] = {}
    prefixed: dict[str, Path] = {}
    for path in audio_files(audio_dir):
        stem = path.stem
        exact.setdefault(stem, path)
        if len(stem) > 11 and stem[11] == "_":
            prefixed.setdefault(stem[:11], path)
        if stem.startswith("Y") and len(stem) > 12 and stem[12] == "_":
            prefixed.setdefault(stem[1:12], path)
    index = dict(prefixed)
    for stem, path in exact.items():
        if stem.startswith("Y") and len(stem) == 12:
            index[stem[1:]] = path
    for stem, path in exact.items():
        index[stem] = path
    return index


def read_audioset(root: str | Path, missing: str = "skip", include_unbalanced: bool = False) -> Manifest:
    """AudioSet (multi-label, 527 classes): `root/class_labels_indices.csv`,
    `root/balanced_train_segments.csv` (split "train") and `root/eval_segments.csv` (split "test"),
    optionally `root/unbalanced_train_segments.csv` (also "train"); audio anywhere under
    `root/audio/`, one file per segment named by YouTube id: `<YTID>.wav`, `Y<YTID>.wav` or
    `<YTID>_<start>_<end>.wav` (also .flac/.ogg/.mp3). AudioSet always has deleted videos:
    `missing="skip"` counts them in `Manifest.skipped`, `missing="error"` raises. An unknown label
    id is always an error."""
    if missing not in ("skip", "error"):
        raise DataError(f"missing={missing!r}: expected 'skip' or 'error'")
    root = require_dir(Path(root), "AudioSet root")
    mids, display = read_audioset_labels(root / "class_labels_indices.csv")
    index_of = {mid: i for i, mid in enumerate(mids)}
    audio_dir = require_dir(root / "audio", "AudioSet audio")
    audio = _index_audioset_audio(audio_dir)
    files = [("train", root / AUDIOSET_SEGMENT_FILES["train"]), ("test", root / AUDIOSET_SEGMENT_FILES["test"])]
    if include_unbalanced:
        files.insert(1, ("train", root / AUDIOSET_UNBALANCED_FILE))

    items, skipped = [], []
    for split, csv_path in files:
        found = 0
        for line, ytid, _start, _end, labels in read_audioset_segments(csv_path):
            for mid in labels:
                if mid not in index_of:
                    raise DataError(f"{csv_path}:{line}: unknown label id {mid!r} (not in class_labels_indices.csv)")
            if not labels:
                raise DataError(f"{csv_path}:{line}: segment {ytid} has no labels")
            path = audio.get(ytid)
            if path is None:
                if missing == "error":
                    raise DataError(f"{csv_path}:{line}: no audio file for {ytid} under {audio_dir}")
                skipped.append((ytid, f"no audio under {audio_dir} (listed in {csv_path.name})"))
                continue
            found += 1
            items.append(AudioItem(path=path, labels=tuple(sorted({index_of[m] for m in labels})), split=split, group=ytid))
        if found == 0:
            raise DataError(f"{csv_path}: none of its segments has an audio file under {audio_dir}")
    spec = DatasetSpec(
        name="audioset",
        class_names=display,
        multi_label=True,
        splits=("train", "test"),
        feature_preset="audioset",
    )
    return Manifest(spec=spec, items=items, skipped=skipped)


# ----------------------------------------------------------------------------- VoxCeleb1

VOXCELEB1_SPLITS = {"1": "train", "2": "valid", "3": "test"}


def read_voxceleb1(root: str | Path) -> Manifest:
    """VoxCeleb1 speaker identification: `root/iden_split.txt` with lines `<1|2|3> idXXXXX/<video>/<utt>.wav`
    (1 train, 2 valid, 3 test) and audio under `root/wav/`. Classes = speaker ids, sorted."""
    root = require_dir(Path(root), "VoxCeleb1 root")
    split_path = require_file(root / "iden_split.txt", "VoxCeleb1 iden_split.txt")
    wav_dir = require_dir(root / "wav", "VoxCeleb1 wav")
    entries = []
    for line_no, line in enumerate(split_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in VOXCELEB1_SPLITS or "/" not in parts[1]:
            raise DataError(f"{split_path}:{line_no}: expected '<1|2|3> idXXXXX/<video>/<utt>.wav', got {line.strip()!r}")
        path = wav_dir / parts[1]
        if not path.is_file():
            raise DataError(f"{split_path}:{line_no}: audio file {path} not found")
        speaker, video = parts[1].split("/")[:2]
        entries.append((path, speaker, video, VOXCELEB1_SPLITS[parts[0]]))
    if not entries:
        raise DataError(f"{split_path}: no entries")
    speakers = sorted({speaker for _, speaker, _, _ in entries})
    index = {s: i for i, s in enumerate(speakers)}
    items = [AudioItem(path=p, labels=(index[s],), split=split, group=f"{s}/{v}") for p, s, v, split in entries]
    spec = DatasetSpec(name="voxceleb1", class_names=speakers, splits=("train", "valid", "test"), feature_preset="audioset")
    return Manifest(spec=spec, items=items)


# ----------------------------------------------------------------------------- IEMOCAP

IEMOCAP_CLASSES = ("neu", "hap", "ang", "sad")
IEMOCAP_MERGE = {"exc": "hap"}
_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")


def read_iemocap(root: str | Path) -> Manifest:
    """IEMOCAP 4-class emotion: `root/Session{1..5}/dialog/EmoEvaluation/*.txt` label lines
    (`[start - end]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[v, a, d]`), audio at
    `root/SessionN/sentences/wav/<dialog>/<utterance>.wav`. Keeps neu/hap/ang/sad with exc merged
    into hap (other emotions dropped, counted in `Manifest.skipped`); fold = session number for
    leave-one-session-out; group = speaker (e.g. Ses01F)."""
    root = require_dir(Path(root), "IEMOCAP root")
    sessions = [root / f"Session{i}" for i in range(1, 6)]
    present = [s for s in sessions if s.is_dir()]
    if not present:
        raise DataError(f"{root}: no Session1..Session5 folders")
    index = {name: i for i, name in enumerate(IEMOCAP_CLASSES)}
    items, skipped = [], []
    for session in present:
        fold = int(session.name[-1])
        eval_dir = require_dir(session / "dialog" / "EmoEvaluation", "IEMOCAP EmoEvaluation")
        label_files = sorted(eval_dir.glob("*.txt"))
        if not label_files:
            raise DataError(f"{eval_dir}: no *.txt label files")
        for label_file in label_files:
            for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
                match = _IEMOCAP_LINE.match(line.strip())
                if not match:
                    continue
                utterance, emotion = match.groups()
                emotion = IEMOCAP_MERGE.get(emotion, emotion)
                if emotion not in index:
                    skipped.append((utterance, f"emotion {emotion!r} not in {IEMOCAP_CLASSES}"))
                    continue
                dialog = utterance.rsplit("_", 1)[0]
                path = session / "sentences" / "wav" / dialog / f"{utterance}.wav"
                if not path.is_file():
                    raise DataError(f"{label_file}: audio for {utterance} not found at {path}")
                speaker = utterance[:5] + utterance.rsplit("_", 1)[1][0]
                items.append(AudioItem(path=path, labels=(index[emotion],), fold=fold, group=speaker))
    if not items:
        raise DataError(f"{root}: no utterances with labels {IEMOCAP_CLASSES} (+exc) found")
    spec = DatasetSpec(
        name="iemocap",
        class_names=list(IEMOCAP_CLASSES),
        folds=tuple(sorted({item.fold for item in items})),
        feature_preset="audioset",
    )
    return Manifest(spec=spec, items=items, skipped=skipped)


# ----------------------------------------------------------------------------- by name

READERS: dict[str, Callable[..., Manifest]] = {
    "esc50": read_esc50,
    "speechcommands": read_speech_commands,
    "speechcommands_v1": lambda root, **kw: read_speech_commands(root, version=1, **kw),
    "speechcommands_v2": lambda root, **kw: read_speech_commands(root, version=2, **kw),
    "audioset": read_audioset,
    "voxceleb1": read_voxceleb1,
    "iemocap": read_iemocap,
    "folder": read_folder_per_label,
    "csv": read_csv_manifest,
}


def detect_dataset(root: str | Path) -> str:
    """Reader name for a path by its layout: a .csv file -> "csv"; meta/esc50.csv -> "esc50";
    testing_list.txt -> "speechcommands"; class_labels_indices.csv -> "audioset";
    iden_split.txt -> "voxceleb1"; Session1 -> "iemocap"; any other directory -> "folder"."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if not root.is_dir():
        raise DataError(f"{root}: dataset not found")
    markers = [("meta/esc50.csv", "esc50"), ("testing_list.txt", "speechcommands"),
               ("class_labels_indices.csv", "audioset"), ("iden_split.txt", "voxceleb1"), ("Session1", "iemocap")]
    for marker, name in markers:
        if (root / marker).exists():
            return name
    return "folder"


def read_dataset(name: str | None, root: str | Path, **kwargs) -> Manifest:
    """Read a dataset by reader name (see `READERS`; None or "auto" = `detect_dataset`);
    "csv" takes the CSV file as `root`."""
    if name in (None, "auto"):
        name = detect_dataset(root)
    if name not in READERS:
        raise DataError(f"dataset {name!r}: unknown reader; choose one of {sorted(READERS)}")
    return READERS[name](root, **kwargs)
