"""``ssamba bench --corpus DIR``: padded vs native embedding throughput on a tiny synthetic folder."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from cli_helpers import run_expecting_error

from ssamba.cli import main

SR = 16000
SECONDS = [0.1, 0.3, 0.45, 0.8, 1.5, 2.2]


def _folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, s in enumerate(SECONDS):
        sf.write(root / f"c{i}.wav", (0.1 * rng.standard_normal(int(s * SR))).astype(np.float32), SR)
    return root


def test_corpus_bench_writes_one_row_per_model_and_window(tmp_path, capsys):
    corpus = _folder(tmp_path / "clips")
    out = tmp_path / "bench"
    assert main(["bench", "--corpus", str(corpus), "--depth", "2", "--threads", "1", "--batch-size", "4",
                 "--out", str(out)]) == 0
    result = json.loads((out / "corpus.json").read_text())
    rows = result["results"]
    assert [(r["model"], r["window"]) for r in rows] == [
        ("ssamba_tiny", "padded"), ("ssamba_tiny", "native"), ("ssast_tiny", "padded"), ("ssast_tiny", "native")]
    for row in rows:
        assert row["clips"] == len(SECONDS)
        assert abs(row["audio_s"] - sum(SECONDS)) < 0.01
        assert row["seconds"] > 0
        assert abs(row["clips_per_s"] - len(SECONDS) / row["seconds"]) < 0.01 * row["clips_per_s"] + 0.01
    for padded, native in zip(rows[::2], rows[1::2]):
        assert padded["speedup"] == 1.0
        assert abs(native["speedup"] - padded["seconds"] / native["seconds"]) < 0.01 * native["speedup"] + 0.01
    table = (out / "corpus.md").read_text()
    assert table.count("| ssamba_tiny |") == 2 and "clips_per_s" in table
    assert "clips/s" in capsys.readouterr().out


def test_corpus_bench_limit_and_bad_folder(tmp_path, capsys):
    corpus = _folder(tmp_path / "clips")
    assert main(["bench", "--corpus", str(corpus), "--models", "ssamba_tiny", "--depth", "2", "--threads", "1",
                 "--limit", "2", "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "corpus.json").read_text())["results"]
    assert [r["clips"] for r in rows] == [2, 2]
    line = run_expecting_error(capsys, ["bench", "--corpus", str(tmp_path / "missing")])
    assert "missing" in line and "not a folder" in line


def test_corpus_bench_leaves_out_clips_shorter_than_a_frame(tmp_path, capsys):
    corpus = _folder(tmp_path / "clips")
    sf.write(corpus / "click.wav", np.zeros(3, np.float32), SR)    # the demo corpus has such clicks
    assert main(["bench", "--corpus", str(corpus), "--models", "ssast_tiny", "--depth", "1", "--threads", "1",
                 "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b" / "corpus.json").read_text())
    assert [r["clips"] for r in result["results"]] == [len(SECONDS)] * 2
    assert ["click.wav" in line and "shorter than one" in line for line in result["left_out"]] == [True]
    assert "left out 1 clip" in capsys.readouterr().out
    only_clicks = tmp_path / "clicks"
    only_clicks.mkdir()
    sf.write(only_clicks / "c.wav", np.zeros(3, np.float32), SR)
    line = run_expecting_error(capsys, ["bench", "--corpus", str(only_clicks), "--models", "ssast_tiny"])
    assert "no clip could be read" in line and "c.wav" in line
