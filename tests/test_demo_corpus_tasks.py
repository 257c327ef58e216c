"""Demo tasks: held-out groups never leak, labels match the paths, splits are deterministic,
filters and caps work, drum names map as documented, and the synthetic tasks are learnable."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ssamba.demo.corpus import CorpusFile, load_corpus_dir
from ssamba.demo.synthetic import make_synthetic_corpus
from ssamba.demo.tasks import TaskConfig, build_demo_tasks, derive_labels, drum_instrument, make_task
from ssamba.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_corpus_dir(make_synthetic_corpus(tmp_path_factory.mktemp("synthetic")))


def _group_from_path(task: str, path: Path) -> str:
    """The held-out unit, read independently from the path."""
    if task == "voice_pack":
        return path.stem.rstrip("0123456789")  # word
    if task in ("word", "drum_instrument"):
        return path.parent.name  # voice pack / kit
    return str(path.parent / path.name.split("_desc_")[0])  # stamp


def _label_from_path(task: str, path: Path) -> str:
    if task == "voice_pack":
        return path.parent.name
    if task == "word":
        return path.stem.rstrip("0123456789")
    if task == "language":
        return path.stem.split("_desc_")[1]
    if path.name.startswith("beats_"):
        return "kick"  # the synthetic drumkit.xml names it "bass drum 1"
    return derive_labels(f"drumkits/{path.parent.name}/{path.name}")["drum_instrument"]


def test_tasks_hold_out_whole_groups_with_correct_labels(corpus):
    tasks = build_demo_tasks(corpus.files)
    assert [t.name for t in tasks] == ["voice_pack", "word", "drum_instrument", "language"]
    for task in tasks:
        train_groups = {_group_from_path(task.name, i.path) for i in task.train_items}
        test_groups = {_group_from_path(task.name, i.path) for i in task.test_items}
        assert train_groups and test_groups and not train_groups & test_groups, task.name
        assert {i.group for i in task.train_items}.isdisjoint(i.group for i in task.test_items)
        assert not {i.path for i in task.train_items} & {i.path for i in task.test_items}
        for item in task.train_items + task.test_items:
            assert item.label == _label_from_path(task.name, item.path), (task.name, item.path)
        counts = task.class_counts()
        assert set(task.classes) == {i.label for i in task.train_items} == {i.label for i in task.test_items}
        assert all(counts["train"][c] >= 5 and counts["test"][c] >= 2 for c in task.classes)
        assert sum(counts["test"].values()) == len(task.test_items)
    by_name = {t.name: t for t in tasks}
    assert by_name["voice_pack"].classes == sorted(["Default", "Pirate", "Robot", "Singer", "Surfer", "Mobster",
                                                     "British", "Classic", "Default_ru"])
    assert all(i.path.parent.name != "Default_ru" for i in by_name["word"].train_items + by_name["word"].test_items)
    assert by_name["word"].dropped == {"localised voice pack": 10}
    assert "Jump" in by_name["word"].classes and "Jump1" not in by_name["word"].classes
    assert by_name["drum_instrument"].classes == sorted(["kick", "snare", "hihat", "tom", "cymbal", "clap", "perc"])
    assert by_name["drum_instrument"].dropped == {"no instrument keyword": 5}  # the five "VP Click" samples
    assert by_name["language"].classes == ["es", "fr", "ru"]


def test_splits_are_deterministic_seeded_and_independent_of_file_order(corpus):
    def split_of(files, seed):
        return {t.name: ([i.path for i in t.train_items], [i.path for i in t.test_items])
                for t in build_demo_tasks(files, TaskConfig(seed=seed))}

    first = split_of(corpus.files, 0)
    shuffled = list(corpus.files)
    random.Random(1).shuffle(shuffled)
    assert split_of(shuffled, 0) == first
    other = split_of(corpus.files, 1)
    assert any(set(other[n][1]) != set(first[n][1]) for n in first)


def _file(relpath: str) -> CorpusFile:
    return CorpusFile(Path("/c") / relpath, relpath, "dir", 1.0, 16000, 1, 100, derive_labels(relpath))


def test_min_counts_drop_rare_classes_and_cap_limits_per_class():
    files = [_file(f"x/{s}/stamp{s}_desc_{lang}.ogg") for s in range(20) for lang in ("fr", "de")]
    files += [_file(f"x/{s}/stamp{s}_desc_ml.ogg") for s in range(3)]  # too rare to keep
    task = build_demo_tasks(files, TaskConfig(test_fraction=0.3))[0]
    assert task.classes == ["de", "fr"] and task.dropped == {"class below minimum count": 3}
    capped = build_demo_tasks(files, TaskConfig(max_per_class=4))[0]
    assert all(n <= 4 for side in capped.class_counts().values() for n in side.values())
    assert {i.path for i in capped.test_items} <= {i.path for i in task.test_items}  # same split, subsampled


def test_word_task_keeps_words_spoken_in_most_packs():
    packs = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]
    files = [_file(f"voices/{p}/{w}.ogg") for p in packs for w in ("Hello", "Bye", "Fire")]
    files += [_file(f"voices/{p}/Rare.ogg") for p in packs[:5]]  # in 5 of 10 packs < 0.6
    files += [_file(f"voices/Default_pl/{w}.ogg") for w in ("Hello", "Bye")]
    task = build_demo_tasks(files, TaskConfig(min_train=2, min_test=1), names=["word"])[0]
    assert task.classes == ["Bye", "Fire", "Hello"]
    assert task.dropped == {"localised voice pack": 2, "word in too few packs": 5}


def test_to_manifest_keeps_labels_splits_and_groups(corpus):
    task = build_demo_tasks(corpus.files, names=["drum_instrument"])[0]
    manifest = task.to_manifest()
    assert manifest.spec.class_names == task.classes and manifest.spec.splits == ("train", "test")
    assert [(i.path, task.classes[i.label], i.group) for i in manifest.select("test")] == [
        (i.path, i.label, i.group) for i in task.test_items]
    assert len(manifest.select("train")) == len(task.train_items)


def test_errors_name_the_problem(corpus):
    with pytest.raises(DataError, match="unknown demo task 'colour'"):
        build_demo_tasks(corpus.files, names=["colour"])
    voices_only = [f for f in corpus.files if "voice_pack" in f.labels]
    with pytest.raises(DataError, match="task language: the corpus has no files labelled with 'language'"):
        build_demo_tasks(voices_only, names=["language"])
    with pytest.raises(DataError, match="need at least 2 groups"):
        make_task("t", "d", "g", [(Path("a"), "x", "g1"), (Path("b"), "y", "g1")], TaskConfig())
    with pytest.raises(DataError, match="no demo task can be built"):
        build_demo_tasks([_file("only/one.wav")])


def test_generic_folders_become_a_folder_task():
    files = [_file(f"{c}/{i}.wav") for c in ("birds", "cars", "rain") for i in range(12)]
    task = build_demo_tasks(files)[0]
    assert task.name == "folder" and task.classes == ["birds", "cars", "rain"]
    assert all(i.label == i.path.parent.name for i in task.train_items + task.test_items)


@pytest.mark.parametrize("name, expected", [
    ("Kick-0", "kick"), ("BD_03", "kick"), ("bassdrum-4mics-br-stereo-soft2", "kick"), ("HardHse_K_02", "kick"),
    ("SN3_01", "snare"), ("sd_05", "snare"), ("jsnare_01", "snare"), ("PearlSnareRimshot-Hard", "snare"),
    ("HiHatClosed-0", "hihat"), ("hhpedal_01", "hihat"), ("Hard_Hse_OHH_1", "hihat"), ("ho_02", "hihat"),
    ("closehihat3", "hihat"), ("EE_Hat_Op_Dirty", "hihat"),
    ("TomHigh-2", "tom"), ("TM2_05", "tom"), ("floortom_01", "tom"), ("t1_02", "tom"), ("101450__menegass__tomh", "tom"),
    ("CrashRide18Bell-0", "cymbal"), ("China-1", "cymbal"), ("rc_01", "cymbal"), ("RD2_03", "cymbal"),
    ("HandClap-Soft", "clap"), ("Fingersnap-Hard", "clap"),
    ("Cowbell-Med", "perc"), ("CB2_01", "perc"), ("Djembe1 Slap", "perc"), ("AgogoLow-3", "perc"),
    ("29800__stomachache__3", None), ("RimClick-0", None), ("PearlSideStick-Hard", None), ("EE_Drum_1", None),
    ("VP Click", None), ("beats_01-10", None), ("c3 - bass drum 1", "kick"), ("a#3 - hi-hat open", "hihat"),
])
def test_drum_keyword_map(name, expected):
    assert drum_instrument(name) == expected


def _spectral_features(path: Path) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float32")
    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::256] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bands = np.log(np.stack([b.sum(1) for b in np.array_split(power, 32, axis=1)], 1) + 1e-8)
    return np.concatenate([bands.mean(0), bands.std(0), [np.log(len(audio) / sr)]])


def test_synthetic_tasks_are_learnable_on_held_out_groups(corpus):
    """A linear probe on log band energies must clearly beat the majority class on every task."""
    for task in build_demo_tasks(corpus.files):
        xtr = np.stack([_spectral_features(i.path) for i in task.train_items])
        xte = np.stack([_spectral_features(i.path) for i in task.test_items])
        scaler = StandardScaler().fit(xtr)
        probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(xtr), [i.label for i in task.train_items])
        accuracy = float(np.mean(probe.predict(scaler.transform(xte)) == np.array([i.label for i in task.test_items])))
        assert accuracy >= max(0.7, 2.5 * task.chance), (task.name, accuracy, task.chance)
