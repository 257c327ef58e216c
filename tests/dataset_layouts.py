"""Builders of miniature datasets in the official on-disk layouts, filled with synthetic
class-dependent audio (a class-specific two-tone chord plus a little noise), for tests.

Each `write_*` function creates the layout under `root` and returns a dict of what it wrote
(expected counts per split / fold / class) so tests can check a reader against it. Reusable by
any test: `from dataset_layouts import write_esc50` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000

ESC50_CATEGORIES = (
    "dog rooster pig cow frog cat hen insects sheep crow rain sea_waves crackling_fire crickets "
    "chirping_birds water_drops wind pouring_water toilet_flush thunderstorm crying_baby sneezing "
    "clapping breathing coughing footsteps laughing brushing_teeth snoring drinking_sipping "
    "door_wood_knock mouse_click keyboard_typing door_wood_creaks can_opening washing_machine "
    "vacuum_cleaner clock_alarm clock_tick glass_breaking helicopter chainsaw siren car_horn engine "
    "train church_bells airplane fireworks hand_saw"
).split()


def class_tone(class_index: int, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Synthetic audio for a class: tones at f and 1.5 f (f = 200 + 90 * class_index Hz,
    random phases) plus white noise at -30 dB; float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f = 200.0 + 90.0 * class_index
    wave = 0.4 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    wave += 0.2 * np.sin(2 * np.pi * 1.5 * f * t + rng.uniform(0, 2 * np.pi))
    wave += 0.03 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_clip(path: Path, class_index: int, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, class_tone(class_index, seconds, sample_rate, seed), sample_rate, subtype="PCM_16")
    return path


# ----------------------------------------------------------------------------- ESC-50


def write_esc50(root: Path, n_classes: int = 50, clips_per_fold: int = 1, seconds: float = 0.5) -> dict:
    """root/meta/esc50.csv + root/audio/<fold>-<src>-<take>-<target>.wav, 5 folds; rows are
    written in a shuffled order so a reader must use the `target` column, not row order."""
    root = Path(root)
    rows = []
    for target in range(n_classes):
        for fold in range(1, 6):
            for take in range(clips_per_fold):
                src = 100000 + target * 100 + fold * 10 + take
                name = f"{fold}-{src}-{'ABCDEFG'[take]}-{target}.wav"
                write_clip(root / "audio" / name, target, seconds, seed=src)
                rows.append((name, fold, target, ESC50_CATEGORIES[target], target < 10 and "True" or "False", src,
                             "ABCDEFG"[take]))
    order = np.random.default_rng(0).permutation(len(rows))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    lines = ["filename,fold,target,category,esc10,src_file,take"] + [",".join(map(str, rows[i])) for i in order]
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return {"n_classes": n_classes, "per_fold": n_classes * clips_per_fold, "total": len(rows)}


# ----------------------------------------------------------------------------- Speech Commands

SC_V1 = (
    "bed bird cat dog down eight five four go happy house left marvin nine no off on one "
    "right seven sheila six stop three tree two up wow yes zero"
).split()
SC_V2 = sorted(SC_V1 + ["backward", "follow", "forward", "learn", "visual"])


def write_speech_commands(root: Path, version: int = 2, per_word: int = 4, seconds: float = 1.0) -> dict:
    """root/<word>/<speaker>_nohash_<n>.wav; per word the first clip is listed in testing_list.txt,
    the second in validation_list.txt, the rest are train; `_background_noise_` has two noise
    clips and a README.md (as the official archive)."""
    root = Path(root)
    words = SC_V1 if version == 1 else SC_V2
    testing, validation = [], []
    for index, word in enumerate(words):
        for n in range(per_word):
            rel = f"{word}/{index:04x}{n:04x}_nohash_{n}.wav"
            write_clip(root / rel, index, seconds, seed=index * 100 + n)
            (testing if n == 0 else validation if n == 1 else []).append(rel)
    (root / "testing_list.txt").write_text("\n".join(testing) + "\n")
    (root / "validation_list.txt").write_text("\n".join(validation) + "\n")
    noise = root / "_background_noise_"
    noise.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("white_noise.wav", "running_tap.wav")):
        sf.write(noise / name, (0.1 * np.random.default_rng(i).standard_normal(2 * SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    (noise / "README.md").write_text("background noise clips\n")
    return {
        "words": words,
        "counts": {"train": len(words) * (per_word - 2), "valid": len(words), "test": len(words)},
        "noise": 2,
    }


# ----------------------------------------------------------------------------- AudioSet

AUDIOSET_CLASSES = [
    ("/m/09x0r", "Speech"),
    ("/m/04rlf", "Music"),
    ("/m/0jbk", "Animal"),
    ("/m/07yv9", "Vehicle"),
    ("/t/dd00088", "Silence, quiet"),
]


def _ytid(n: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    rng = np.random.default_rng(1000 + n)
    first = "-" if n == 0 else "Y" if n == 1 else alphabet[n % 52]  # ids may start with '-' or 'Y'
    return first + "".join(alphabet[i] for i in rng.integers(0, 64, 10))


def write_audioset(root: Path, n_train: int = 8, n_eval: int = 6, missing: int = 1, seconds: float = 1.0) -> dict:
    """Official files: class_labels_indices.csv, balanced_train_segments.csv, eval_segments.csv
    (3 '#' header lines, `YTID, start, end, "mid1,mid2"`), audio under root/audio/{train,eval}/
    with the three accepted namings in turn (`Y<id>.wav`, `<id>.wav`, `<id>_<start>_<end>.flac`).
    The last `missing` segments of each csv have no audio file. Labels: segment i has class
    i % 5 and, when i is even, also class (i + 1) % 5."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["index,mid,display_name"] + [f'{i},{mid},"{name}"' for i, (mid, name) in enumerate(AUDIOSET_CLASSES)]
    (root / "class_labels_indices.csv").write_text("\n".join(lines) + "\n")
    expected = {}
    n = 0
    for split, csv_name, count, sub in (("train", "balanced_train_segments.csv", n_train, "train"),
                                        ("test", "eval_segments.csv", n_eval, "eval")):
        rows = [
            "# Segments csv created Sun Mar  5 10:54:31 2017",
            f"# num_ytids={count}, num_segs={count}, num_unique_labels=5, num_positive_labels={count}",
            "# YTID, start_seconds, end_seconds, positive_labels",
        ]
        labels_by_id = {}
        for i in range(count):
            ytid = _ytid(n)
            n += 1
            labels = sorted({i % 5} | ({(i + 1) % 5} if i % 2 == 0 else set()))
            mids = ",".join(AUDIOSET_CLASSES[c][0] for c in labels)
            rows.append(f'{ytid}, 30.000, 40.000, "{mids}"')
            if i >= count - missing:
                continue
            labels_by_id[ytid] = labels
            name = [f"Y{ytid}.wav", f"{ytid}.wav", f"{ytid}_30.000_40.000.flac"][i % 3]
            write_clip(root / "audio" / sub / name, labels[0], seconds, seed=n)
        (root / csv_name).write_text("\n".join(rows) + "\n")
        expected[split] = labels_by_id
    return {"labels": expected, "missing": 2 * missing}


# ----------------------------------------------------------------------------- VoxCeleb1


def write_voxceleb1(root: Path, n_speakers: int = 4, videos: int = 2, utterances: int = 2, seconds: float = 0.5) -> dict:
    """root/iden_split.txt and root/wav/id1XXXX/<video>/<nnnnn>.wav. Per speaker, the last
    utterance of the last video is test (3), the last of the first video valid (2), rest train (1)."""
    root = Path(root)
    lines, counts = [], {"train": 0, "valid": 0, "test": 0}
    for s in range(n_speakers):
        speaker = f"id1{s:04d}"
        for v in range(videos):
            video = f"vid{s}{v}abcdef"[:11]
            for u in range(utterances):
                rel = f"{speaker}/{video}/{u + 1:05d}.wav"
                write_clip(root / "wav" / rel, s, seconds, seed=s * 100 + v * 10 + u)
                last = u == utterances - 1
                split = 3 if last and v == videos - 1 else 2 if last and v == 0 else 1
                counts[{1: "train", 2: "valid", 3: "test"}[split]] += 1
                lines.append(f"{split} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return {"speakers": [f"id1{s:04d}" for s in range(n_speakers)], "counts": counts}


# ----------------------------------------------------------------------------- IEMOCAP

IEMOCAP_EMOTIONS = ("neu", "hap", "ang", "sad", "exc", "fru", "xxx")


def write_iemocap(root: Path, sessions: int = 5, seconds: float = 0.5) -> dict:
    """root/SessionN/dialog/EmoEvaluation/<dialog>.txt with the official header and per-turn lines,
    audio at root/SessionN/sentences/wav/<dialog>/<utterance>.wav. Each session has two dialogs;
    each dialog one utterance per emotion in IEMOCAP_EMOTIONS (exc counts as hap; fru and xxx
    are dropped). Returns the expected 4-class counts per session."""
    root = Path(root)
    keep = {"neu": "neu", "hap": "hap", "ang": "ang", "sad": "sad", "exc": "hap"}
    counts = {}
    for s in range(1, sessions + 1):
        per_class = {"neu": 0, "hap": 0, "ang": 0, "sad": 0}
        for d, dialog in enumerate((f"Ses0{s}F_impro01", f"Ses0{s}M_script02_1")):
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for k, emotion in enumerate(IEMOCAP_EMOTIONS):
                gender = "FM"[k % 2]
                utterance = f"{dialog}_{gender}{k:03d}"
                lines.append(f"[{k * 3.1:.4f} - {k * 3.1 + 2.5:.4f}]\t{utterance}\t{emotion}\t[2.5000, 3.0000, 3.5000]")
                lines.append(f"C-E1:\t{emotion};\t()")
                lines.append("")
                class_index = list(IEMOCAP_EMOTIONS).index(keep.get(emotion, emotion))
                write_clip(root / f"Session{s}" / "sentences" / "wav" / dialog / f"{utterance}.wav", class_index, seconds,
                           seed=s * 100 + d * 10 + k)
                if emotion in keep:
                    per_class[keep[emotion]] += 1
            eval_dir = root / f"Session{s}" / "dialog" / "EmoEvaluation"
            eval_dir.mkdir(parents=True, exist_ok=True)
            (eval_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (eval_dir / "Categorical").mkdir(exist_ok=True)
        counts[s] = per_class
    return {"counts": counts, "dropped_per_session": 2 * 2}


# ----------------------------------------------------------------------------- generic


def write_folder_per_label(root: Path, classes: list[str], per_class: int = 3, seconds: float = 0.5) -> dict:
    """root/<class>/<class>_<n>.wav."""
    root = Path(root)
    for c, name in enumerate(classes):
        for n in range(per_class):
            write_clip(root / name / f"{name}_{n}.wav", c, seconds, seed=c * 100 + n)
    return {"classes": sorted(classes), "per_class": per_class}


def write_csv_dataset(root: Path, classes: list[str], per_class: int = 4, folds: int = 2, seconds: float = 0.5,
                      spread: int = 1) -> Path:
    """root/clips/*.wav and root/manifest.csv with `path,label,fold` (paths relative to root).
    Class c sounds like tone class c * spread (spread > 1 puts classes in distant mel bands)."""
    root = Path(root)
    lines = ["path,label,fold"]
    for c, name in enumerate(classes):
        for n in range(per_class):
            rel = f"clips/{name}_{n}.wav"
            write_clip(root / rel, c * spread, seconds, seed=c * 100 + n)
            lines.append(f"{rel},{name},{n % folds + 1}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"
