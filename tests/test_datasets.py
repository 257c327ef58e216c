"""Readers on miniature datasets in the official layouts: splits, label counts, label mapping,
and one-line DataErrors naming the path when the layout is wrong."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import soundfile as sf
from dataset_layouts import (
    AUDIOSET_CLASSES,
    ESC50_CATEGORIES,
    write_audioset,
    write_csv_dataset,
    write_esc50,
    write_folder_per_label,
    write_iemocap,
    write_speech_commands,
    write_voxceleb1,
)

from ssamba.data.datasets import (
    read_audioset,
    read_dataset,
    read_esc50,
    read_iemocap,
    read_speech_commands,
    read_voxceleb1,
)
from ssamba.data.manifests import read_csv_manifest, read_folder_per_label
from ssamba.errors import DataError


def assert_one_line_error(excinfo, path) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message


# ----------------------------------------------------------------------------- ESC-50


@pytest.fixture(scope="module")
def esc50_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("esc50")
    write_esc50(root, n_classes=50, clips_per_fold=1, seconds=0.1)
    return root


def test_esc50_folds_classes_and_mapping(esc50_root):
    manifest = read_esc50(esc50_root)
    assert manifest.spec.num_classes == 50
    assert manifest.spec.class_names == ESC50_CATEGORIES
    assert manifest.spec.folds == (1, 2, 3, 4, 5)
    assert manifest.spec.feature_preset == "esc50"
    assert len(manifest) == 250
    for fold in range(1, 6):
        train, test = manifest.fold_split(fold)
        assert len(test) == 50 and len(train) == 200
        assert {item.fold for item in test} == {fold}
        assert fold not in {item.fold for item in train}
    assert set(manifest.label_counts().values()) == {5}
    for item in manifest.items:  # file name ends with -<target>.wav: label must match it
        assert item.label == int(item.path.stem.rsplit("-", 1)[1])


def test_esc50_wrong_layouts(tmp_path, esc50_root):
    root = tmp_path / "esc"
    shutil.copytree(esc50_root, root)
    csv_path = root / "meta" / "esc50.csv"
    text = csv_path.read_text()

    lines = text.splitlines()
    name, fold, target, *rest = lines[1].split(",")
    lines[1] = ",".join([name, fold, target, "not_a_category", *rest[1:]])
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="unknown label") as excinfo:
        read_esc50(root)
    assert_one_line_error(excinfo, csv_path)

    csv_path.write_text(text)
    missing_file = root / "audio" / lines[2].split(",")[0]
    missing_file.unlink()
    with pytest.raises(DataError, match="not found") as excinfo:
        read_esc50(root)
    assert_one_line_error(excinfo, missing_file)

    csv_path.unlink()
    with pytest.raises(DataError) as excinfo:
        read_esc50(root)
    assert_one_line_error(excinfo, csv_path)

    shutil.rmtree(root / "audio")
    csv_path.write_text(text)
    with pytest.raises(DataError) as excinfo:
        read_esc50(root)
    assert_one_line_error(excinfo, root / "audio")


# ----------------------------------------------------------------------------- Speech Commands


@pytest.mark.parametrize("version,n_words", [(1, 30), (2, 35)])
def test_speech_commands_splits(tmp_path, version, n_words):
    written = write_speech_commands(tmp_path, version=version, per_word=4, seconds=0.1)
    manifest = read_speech_commands(tmp_path)  # version inferred from the folders
    assert manifest.spec.name == f"speechcommands_v{version}"
    assert manifest.spec.num_classes == n_words
    assert "_background_noise_" not in manifest.spec.class_names
    assert manifest.spec.class_names == sorted(manifest.spec.class_names)
    assert {split: len(manifest.select(split)) for split in ("train", "valid", "test")} == written["counts"]
    assert len(manifest.noise_paths) == 2 and all(p.suffix == ".wav" for p in manifest.noise_paths)
    listed_test = set((tmp_path / "testing_list.txt").read_text().split())
    for item in manifest.items:
        rel = item.path.relative_to(tmp_path).as_posix()
        assert manifest.spec.class_names[item.label] == rel.split("/")[0]
        assert (item.split == "test") == (rel in listed_test)
    assert set(manifest.label_counts().values()) == {4}


def test_speech_commands_wrong_layouts(tmp_path):
    write_speech_commands(tmp_path, version=1, per_word=3, seconds=0.1)
    for f in (tmp_path / "yes").iterdir():
        f.unlink()
    (tmp_path / "testing_list.txt").write_text("")
    (tmp_path / "validation_list.txt").write_text("")
    with pytest.raises(DataError, match="empty class folder") as excinfo:
        read_speech_commands(tmp_path)
    assert_one_line_error(excinfo, tmp_path / "yes")

    (tmp_path / "banana").mkdir()
    with pytest.raises(DataError, match="unknown label") as excinfo:
        read_speech_commands(tmp_path, version=1)
    assert_one_line_error(excinfo, tmp_path / "banana")
    (tmp_path / "banana").rmdir()

    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(DataError) as excinfo:
        read_speech_commands(tmp_path)
    assert_one_line_error(excinfo, tmp_path / "testing_list.txt")

    shutil.rmtree(tmp_path / "zero")
    with pytest.raises(DataError, match="missing word folders"):
        read_speech_commands(tmp_path, version=1)


# ----------------------------------------------------------------------------- AudioSet


def test_audioset_multilabel_and_naming(tmp_path):
    written = write_audioset(tmp_path, n_train=8, n_eval=6, missing=1, seconds=0.1)
    manifest = read_audioset(tmp_path)
    assert manifest.spec.multi_label
    assert manifest.spec.class_names == [name for _, name in AUDIOSET_CLASSES]  # quoted comma kept
    assert len(manifest.skipped) == written["missing"]
    for split in ("train", "test"):
        items = manifest.select(split)
        assert {item.group: list(item.labels) for item in items} == written["labels"][split]
    assert any(len(item.labels) == 2 for item in manifest.items)
    suffixes = Counter(item.path.suffix for item in manifest.items)
    assert suffixes[".flac"] > 0 and suffixes[".wav"] > 0

    with pytest.raises(DataError, match="no audio file") as excinfo:
        read_audioset(tmp_path, missing="error")
    assert_one_line_error(excinfo, tmp_path / "balanced_train_segments.csv")


def test_audioset_wrong_layouts(tmp_path):
    write_audioset(tmp_path, n_train=4, n_eval=3, missing=0, seconds=0.1)
    eval_csv = tmp_path / "eval_segments.csv"
    text = eval_csv.read_text()
    eval_csv.write_text(text.replace("/m/09x0r", "/m/unknown", 1))
    with pytest.raises(DataError, match="unknown label") as excinfo:
        read_audioset(tmp_path)
    assert_one_line_error(excinfo, eval_csv)
    eval_csv.unlink()
    with pytest.raises(DataError) as excinfo:
        read_audioset(tmp_path)
    assert_one_line_error(excinfo, eval_csv)
    eval_csv.write_text(text)
    (tmp_path / "class_labels_indices.csv").unlink()
    with pytest.raises(DataError) as excinfo:
        read_audioset(tmp_path)
    assert_one_line_error(excinfo, tmp_path / "class_labels_indices.csv")


# ----------------------------------------------------------------------------- VoxCeleb1


def test_voxceleb1_identification_split(tmp_path):
    written = write_voxceleb1(tmp_path, n_speakers=4, videos=2, utterances=2, seconds=0.1)
    manifest = read_voxceleb1(tmp_path)
    assert manifest.spec.class_names == written["speakers"]
    assert {s: len(manifest.select(s)) for s in ("train", "valid", "test")} == written["counts"]
    for item in manifest.items:
        assert manifest.spec.class_names[item.label] == item.path.parts[-3]

    split_file = tmp_path / "iden_split.txt"
    split_file.write_text(split_file.read_text() + "4 id10000/x/00001.wav\n")
    with pytest.raises(DataError) as excinfo:
        read_voxceleb1(tmp_path)
    assert_one_line_error(excinfo, split_file)
    split_file.unlink()
    with pytest.raises(DataError) as excinfo:
        read_voxceleb1(tmp_path)
    assert_one_line_error(excinfo, split_file)


# ----------------------------------------------------------------------------- IEMOCAP


def test_iemocap_four_classes_merge_and_sessions(tmp_path):
    written = write_iemocap(tmp_path, sessions=5, seconds=0.1)
    manifest = read_iemocap(tmp_path)
    assert manifest.spec.class_names == ["neu", "hap", "ang", "sad"]
    assert manifest.spec.folds == (1, 2, 3, 4, 5)
    for session in range(1, 6):
        _, test = manifest.fold_split(session)
        assert manifest.label_counts(test) == written["counts"][session]
        assert {item.group[:5] for item in test} == {f"Ses0{session}"}
    assert manifest.label_counts()["hap"] == 2 * manifest.label_counts()["neu"]  # exc merged
    assert len(manifest.skipped) == 5 * written["dropped_per_session"]
    exc_items = [item for item in manifest.items if "_M004" in item.path.stem or "_F004" in item.path.stem]
    assert exc_items and all(manifest.spec.class_names[item.label] == "hap" for item in exc_items)

    (tmp_path / "Session3" / "sentences" / "wav" / "Ses03F_impro01" / "Ses03F_impro01_F000.wav").unlink()
    with pytest.raises(DataError, match="Ses03F_impro01_F000") as excinfo:
        read_iemocap(tmp_path)
    assert_one_line_error(excinfo, tmp_path / "Session3" / "dialog" / "EmoEvaluation" / "Ses03F_impro01.txt")


def test_iemocap_missing_sessions(tmp_path):
    with pytest.raises(DataError, match="Session1") as excinfo:
        read_iemocap(tmp_path)
    assert_one_line_error(excinfo, tmp_path)


# ----------------------------------------------------------------------------- generic readers


def test_folder_per_label(tmp_path):
    write_folder_per_label(tmp_path / "data", ["zebra", "apple", "mango"], per_class=3, seconds=0.1)
    manifest = read_folder_per_label(tmp_path / "data")
    assert manifest.spec.class_names == ["apple", "mango", "zebra"]
    assert manifest.label_counts() == {"apple": 3, "mango": 3, "zebra": 3}
    for item in manifest.items:
        assert manifest.spec.class_names[item.label] == item.path.parent.name

    (tmp_path / "data" / "empty").mkdir()
    with pytest.raises(DataError, match="empty class folder") as excinfo:
        read_folder_per_label(tmp_path / "data")
    assert_one_line_error(excinfo, tmp_path / "data" / "empty")
    with pytest.raises(DataError) as excinfo:
        read_folder_per_label(tmp_path / "nowhere")
    assert_one_line_error(excinfo, tmp_path / "nowhere")


def test_folder_per_label_with_split_folders(tmp_path):
    write_folder_per_label(tmp_path / "train", ["a", "b"], per_class=3, seconds=0.1)
    write_folder_per_label(tmp_path / "test", ["a", "b"], per_class=1, seconds=0.1)
    manifest = read_dataset("folder", tmp_path)
    assert manifest.spec.splits == ("train", "test")
    assert len(manifest.select("train")) == 6 and len(manifest.select("test")) == 2


def test_csv_manifest_and_errors(tmp_path):
    csv_path = write_csv_dataset(tmp_path, ["b", "a", "c"], per_class=4, folds=2, seconds=0.1)
    manifest = read_csv_manifest(csv_path)
    assert manifest.spec.class_names == ["a", "b", "c"]
    assert manifest.spec.folds == (1, 2)
    assert manifest.label_counts() == {"a": 4, "b": 4, "c": 4}
    train, test = manifest.fold_split(2)
    assert len(train) == 6 and len(test) == 6
    assert all(manifest.spec.class_names[item.label] == item.path.stem.split("_")[0] for item in manifest.items)

    with pytest.raises(DataError, match="unknown label 'c'") as excinfo:
        read_csv_manifest(csv_path, class_names=["a", "b"])
    assert_one_line_error(excinfo, csv_path)

    multi = tmp_path / "multi.csv"
    multi.write_text("path,label\nclips/a_0.wav,a;b\nclips/b_0.wav,b\n")
    m = read_csv_manifest(multi)
    assert m.spec.multi_label and m.items[0].labels == (0, 1)

    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nclips/a_0.wav,a\n")
    with pytest.raises(DataError, match="missing column 'path'") as excinfo:
        read_csv_manifest(bad)
    assert_one_line_error(excinfo, bad)
    with pytest.raises(DataError) as excinfo:
        read_csv_manifest(tmp_path / "absent.csv")
    assert_one_line_error(excinfo, tmp_path / "absent.csv")


def test_read_dataset_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown reader"):
        read_dataset("imagenet", tmp_path)
    with pytest.raises(DataError, match="not found") as excinfo:
        read_dataset("auto", tmp_path / "absent")
    assert_one_line_error(excinfo, tmp_path / "absent")


def test_detect_dataset_by_layout(tmp_path, esc50_root):
    write_speech_commands(tmp_path / "sc", version=1, per_word=3, seconds=0.05)
    write_audioset(tmp_path / "as", n_train=3, n_eval=3, missing=0, seconds=0.05)
    write_voxceleb1(tmp_path / "vox", n_speakers=2, seconds=0.05)
    write_iemocap(tmp_path / "iemo", sessions=1, seconds=0.05)
    write_folder_per_label(tmp_path / "folder", ["a", "b"], per_class=1, seconds=0.05)
    csv_path = write_csv_dataset(tmp_path / "csv", ["a", "b"], per_class=2, seconds=0.05)
    expected = {esc50_root: "esc50", tmp_path / "sc": "speechcommands_v1", tmp_path / "as": "audioset",
                tmp_path / "vox": "voxceleb1", tmp_path / "iemo": "iemocap", tmp_path / "folder": "folder", csv_path: "manifest"}
    for root, name in expected.items():
        assert read_dataset("auto", root).spec.name == name


def test_fixture_audio_is_class_dependent(tmp_path):
    """The synthetic clips of different classes differ in their dominant frequency."""
    import numpy as np

    write_folder_per_label(tmp_path, ["c0", "c1"], per_class=1, seconds=0.5)
    peaks = []
    for name in ("c0", "c1"):
        wave, sr = sf.read(tmp_path / name / f"{name}_0.wav")
        spectrum = np.abs(np.fft.rfft(wave))
        peaks.append(np.argmax(spectrum) * sr / wave.size)
    assert peaks[0] == pytest.approx(200, abs=3) and peaks[1] == pytest.approx(290, abs=3)
