"""``datasets`` as a data source (ssamba.integrations.hf_datasets): a ``save_to_disk`` dataset reads
into the same Manifest as the equivalent folder + CSV and fine-tunes to the same metrics with the
same seed; rows decode as ssamba decodes files; bad columns, splits and rows fail in one line
naming them (exit 2 from the CLI), or are skipped on request. Offline."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import run_expecting_error
from dataset_layouts import class_tone
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
datasets = pytest.importorskip("datasets")

from ssamba.audio import load_audio  # noqa: E402
from ssamba.data.manifests import read_csv_manifest  # noqa: E402
from ssamba.downstream.finetune import FinetuneConfig, finetune  # noqa: E402
from ssamba.errors import DataError  # noqa: E402
from ssamba.integrations.hf_datasets import parse_source, read_hf_dataset  # noqa: E402
from ssamba.train.config import TrainConfig  # noqa: E402

CLASSES = ["hum", "tone", "whistle"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The same clips as audio folder + CSV (path,label,split) and as a save_to_disk DatasetDict
    (train/test, an Audio column of the files' bytes, string labels)."""
    root = tmp_path_factory.mktemp("twin")
    lines, rows = ["path,label,split"], {"train": {"audio": [], "label": []}, "test": {"audio": [], "label": []}}
    for c, name in enumerate(CLASSES):
        for n in range(4):
            rel = f"clips/{name}_{n}.wav"
            (root / "clips").mkdir(exist_ok=True)
            sf.write(root / rel, class_tone(4 * c, 0.5, seed=10 * c + n), 16000)
            split = "train" if n < 3 else "test"
            lines.append(f"{rel},{name},{split}")
            rows[split]["audio"].append({"bytes": (root / rel).read_bytes(), "path": None})
            rows[split]["label"].append(name)
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    dataset = datasets.DatasetDict({split: datasets.Dataset.from_dict(values).cast_column("audio", datasets.Audio())
                                    for split, values in rows.items()})
    dataset.save_to_disk(str(root / "saved"))
    return root


def test_reads_the_manifest_the_csv_reader_reads(twin):
    from_csv = read_csv_manifest(twin / "manifest.csv")
    from_hf = read_hf_dataset(f"hf-dataset:{twin / 'saved'}")
    assert from_hf.spec.class_names == from_csv.spec.class_names == CLASSES
    assert from_hf.spec.splits == from_csv.spec.splits == ("train", "test")
    by_split = lambda m: sorted((i.split, i.labels) for i in m.items)  # noqa: E731
    assert by_split(from_hf) == by_split(from_csv)
    csv_items = {split: [i for i in from_csv.items if i.split == split] for split in ("train", "test")}
    hf_items = {split: [i for i in from_hf.items if i.split == split] for split in ("train", "test")}
    for split in ("train", "test"):
        for a, b in zip(csv_items[split], hf_items[split]):
            assert a.labels == b.labels and torch.equal(b.audio(), load_audio(a.path))


def test_same_finetuning_metrics_as_folder_and_csv(twin, tmp_path):
    from transformers import AutoModelForAudioClassification

    from ssamba.cli import main

    config = FinetuneConfig(dataset="csv", model="ssast_tiny", fstride=16, tstride=16, features="speechcommands",
                            model_overrides=dict(depth=2, embed_dim=32, num_heads=2, drop_path_rate=0.0))
    train = TrainConfig(seed=3, epochs=100, max_steps=4, batch_size=9, lr=3e-3, warmup_steps=0, schedule="constant",
                        num_workers=0, num_threads=1, progress=False, tensorboard=False, checkpoint_every=10_000,
                        device="cpu", weight_decay=0.0)
    torch.manual_seed(0)
    from_csv = finetune(config, train, twin / "manifest.csv", tmp_path / "csv")
    torch.manual_seed(0)
    source = f"hf-dataset:{twin / 'saved'}"
    from_hf = finetune(config, train, source, tmp_path / "hf", manifest=read_hf_dataset(source))
    assert from_hf["runs"]["all"] == from_csv["runs"]["all"]
    assert from_hf["confusion_matrix"] == from_csv["confusion_matrix"]
    trained = [load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("csv", "hf")]
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])   # the same training, step by step
    assert main(["evaluate", "--model", str(tmp_path / "hf"), "--data", source]) == 0   # the CLI's hook
    evaluated = json.loads((tmp_path / "hf" / "evaluation" / "results.json").read_text())["runs"]["all"]
    assert evaluated == {k: v for k, v in from_hf["runs"]["all"].items() if k != "train_loss_last"}
    classifier = AutoModelForAudioClassification.from_pretrained(tmp_path / "hf" / "model")   # with its labels
    assert classifier.config.label2id == {name: i for i, name in enumerate(CLASSES)}


def test_rows_decode_like_files_stereo_and_resampled(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((11025, 2))).astype(np.float32)
    sf.write(tmp_path / "clip.flac", stereo, 22050)
    data = datasets.Dataset.from_dict({"sound": [{"bytes": (tmp_path / "clip.flac").read_bytes(), "path": None},
                                                 {"bytes": None, "path": str(tmp_path / "clip.flac")}],
                                       "tags": [["a", "b"], ["b"]]}).cast_column("sound", datasets.Audio())
    data.save_to_disk(str(tmp_path / "ds"))
    manifest = read_hf_dataset(f"hf-dataset:{tmp_path / 'ds'}?label=tags")   # the one Audio column is found
    assert manifest.spec.multi_label and manifest.spec.class_names == ["a", "b"]
    assert [i.labels for i in manifest.items] == [(0, 1), (1,)]
    want = load_audio(tmp_path / "clip.flac")                                # mono mix, resampled to 16 kHz
    for item in manifest.items:
        assert torch.equal(item.audio(), want)


def bad_dataset(tmp_path):
    """Rows: a good clip, bytes that are not audio; a ClassLabel column and a float column."""
    good = io.BytesIO()
    sf.write(good, class_tone(0, 0.3), 16000, format="WAV")
    rows = {"audio": [{"bytes": good.getvalue(), "path": None}, {"bytes": b"not audio at all", "path": None}],
            "label": [0, 1], "extra": [1.0, 2.0]}
    data = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio())   # as built, no encoding
    data = data.cast_column("label", datasets.ClassLabel(names=["x", "y"]))
    data = data.cast_column("extra", datasets.Value("float32"))
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "bad"))
    return f"hf-dataset:{tmp_path / 'bad'}"


def test_bad_sources_fail_in_one_line_naming_the_problem(tmp_path):
    source = bad_dataset(tmp_path)
    with pytest.raises(DataError, match=r"\[train\] column 'audio' row 1: not a readable audio file"):
        read_hf_dataset(source)
    with pytest.raises(DataError, match=r"no split 'dev' \(valid\); the dataset has \['train'\]"):
        read_hf_dataset(source + "?valid=dev")
    with pytest.raises(DataError, match=r"no column 'genre'"):
        read_hf_dataset(source + "?label=genre")
    with pytest.raises(DataError, match=r"column 'extra' has Value\('float32'\); expected class labels"):
        read_hf_dataset(source + "?label=extra")
    with pytest.raises(DataError, match=r"unknown option 'lable'"):
        parse_source(source + "?lable=x")
    with pytest.raises(DataError, match=r"cannot open the dataset"):
        read_hf_dataset(f"hf-dataset:{tmp_path / 'nothing-here'}")
    skipped = read_hf_dataset(source, skip_errors=True)
    assert len(skipped.items) == 1 and skipped.items[0].labels == (0,) and skipped.spec.class_names == ["x", "y"]
    assert len(skipped.skipped) == 1 and "row 1" in skipped.skipped[0][0]


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    source = bad_dataset(tmp_path)
    line = run_expecting_error(capsys, ["probe", "--model", str(tmp_path / "unused"), "--data", source,
                                        "--out", str(tmp_path / "out")])
    assert "column 'audio' row 1" in line and str(tmp_path / "bad") in line


def test_pretraining_streams_a_saved_dataset(twin, tmp_path):
    from cli_helpers import TINY_PRETRAIN

    from ssamba.cli import main
    from ssamba.integrations.transformers_adapter import SsambaModel
    from ssamba.models import load

    source = f"hf-dataset:{twin / 'saved'}"
    argv = ["pretrain", "--config", "ssamba_tiny_cpu", "--data", source, "--out", str(tmp_path / "run"),
            *TINY_PRETRAIN, "train.max_steps=2", "data.valid_clips=0"]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "run" / "checkpoints" / "last" / "config.json").read_text())
    assert saved["data"]["source"] == source                               # kept as an address, for --resume
    assert load(tmp_path / "run").config.depth == 2
    x = torch.randn(1, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = SsambaModel.from_pretrained(tmp_path / "run")(x).last_hidden_state   # a run, as ssamba.load takes it
        assert torch.equal(got, load(tmp_path / "run").forward_features(x))


def test_stream_gives_each_training_row_once_per_epoch_reproducibly(twin):
    from ssamba.data.audio_folder import AudioCropDataset
    from ssamba.integrations.hf_streams import HfCropStream

    stream = HfCropStream(f"hf-dataset:{twin / 'saved'}", crop_frames=64, seed=5)
    first = [x["fbank"] for x in stream]
    assert len(first) == 9 and all(f.shape == (64, 128) for f in first)   # the 9 training rows
    assert all(torch.equal(a, b) for a, b in zip(first, [x["fbank"] for x in stream]))
    crops = AudioCropDataset([], crop_frames=64)
    files = sorted((twin / "clips").glob("*_[012].wav"))
    whole = [crops.fbank(load_audio(f), 0) for f in files]
    rows = [next(i for i, w in enumerate(whole) if torch.equal(f, w)) for f in first]   # 48-frame clips: whole
    assert sorted(rows) == list(range(9))                                  # each row once


def test_embed_cli_embeds_every_row(twin, tmp_path):
    from ssamba.cli import main
    from ssamba.inference import embed
    from ssamba.models import create_model

    torch.manual_seed(0)
    create_model("ssast_tiny", depth=2, embed_dim=32, num_heads=2, input_tdim=64).save_pretrained(tmp_path / "enc")
    out = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(tmp_path / "enc"), "--out", str(out), f"hf-dataset:{twin / 'saved'}"]) == 0
    names = (tmp_path / "emb.files.txt").read_text().splitlines()
    assert len(names) == 12 and names[0].endswith("saved[train][0]") and names[-1].endswith("saved[test][2]")
    manifest = read_csv_manifest(twin / "manifest.csv")
    order = [i for split in ("train", "test") for i in manifest.items if i.split == split]
    want = embed([load_audio(i.path) for i in order], tmp_path / "enc", sample_rate=16000)
    assert np.array_equal(np.load(out), want)


@pytest.mark.slow   # ~4 s (two probes); the quick variants: the fine-tuning twin test and the CLI error test
def test_probe_cli_gives_the_csv_results(twin, tmp_path):
    from ssamba.cli import main
    from ssamba.models import create_model

    torch.manual_seed(0)
    create_model("ssast_tiny", depth=2, embed_dim=32, num_heads=2, input_tdim=64).save_pretrained(tmp_path / "enc")
    runs = {}
    for name, data in (("csv", str(twin / "manifest.csv")), ("hf", f"hf-dataset:{twin / 'saved'}")):
        assert main(["probe", "--model", str(tmp_path / "enc"), "--data", data, "--out", str(tmp_path / name),
                     "--features", "speechcommands"]) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert runs["hf"]["runs"] == runs["csv"]["runs"] and runs["hf"]["confusion_matrix"] == runs["csv"]["confusion_matrix"]
