"""`ssamba demo --quick` end to end on a generated corpus (CLI in a subprocess), and the pieces
it is made of: embeddings vs the library Embedder, log-mel statistics, bootstrap intervals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ssamba
from ssamba.demo.embeddings import encoder_embeddings, logmel_statistics
from ssamba.demo.evaluate import bootstrap_ci
from ssamba.demo.features import compute_fbanks
from ssamba.demo.pipeline import DemoConfig, random_init_encoder
from ssamba.demo.synthetic import make_synthetic_corpus
from ssamba.inference import embed

TASKS = ("voice_pack", "word", "drum_instrument", "language")
METHODS = ("log-mel stats", "SSAMBA random init", "SSAMBA pretrained", "SSAST pretrained",
           "SSAMBA pretrained, mean‖std", "SSAST pretrained, mean‖std", "SSAMBA random init, mean‖std",
           "SSAMBA pretrained, bands", "SSAST pretrained, bands", "SSAMBA random init, bands",
           "SSAMBA random init, fine-tuned", "SSAMBA pretrained, fine-tuned", "SSAST pretrained, fine-tuned")
CLI = [sys.executable, "-c", "import sys; from ssamba.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One quick demo run on the synthetic corpus (a few seconds of pretraining per model)."""
    root = tmp_path_factory.mktemp("demo")
    corpus = make_synthetic_corpus(root / "corpus")
    out = root / "out"
    run = subprocess.run(CLI + ["demo", "--quick", "--corpus", str(corpus), "--cache", str(root / "cache"),
                                "--out", str(out), "--minutes", "0.05"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


def _task_tables(report: str) -> dict[str, dict[str, tuple[float, float, float]]]:
    """task -> method -> (accuracy, ci low, ci high) from the per-task tables of report.md."""
    tables = {}
    for section in re.split(r"^### ", report, flags=re.M)[1:]:
        task = section.split(":", 1)[0]
        rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) – ([\d.]+) \| [\d.]+ \| \d+ \|$", section, flags=re.M)
        tables[task] = {m: (float(a), float(lo), float(hi)) for m, a, lo, hi in rows}
    return tables


def test_report_has_every_task_and_method_with_accuracies_inside_their_intervals(demo):
    out, run = demo
    report = (out / "report.md").read_text()
    tables = _task_tables(report)
    assert set(tables) == set(TASKS)
    for task, rows in tables.items():
        assert set(rows) == set(METHODS), task
        for method, (acc, low, high) in rows.items():
            assert 0 <= low <= acc <= high <= 100, (task, method)
    results = json.loads((out / "results.json").read_text())["results"]
    assert len(results) == len(TASKS) * len(METHODS)
    for r in results:  # the JSON and the Markdown say the same
        assert tables[r["task"]][r["method"]][0] == pytest.approx(100 * r["accuracy"], abs=0.051)
    # the synthetic tasks are easy: log-mel statistics must be far above chance on most of them
    assert sum(tables[t]["log-mel stats"][0] > 60 for t in TASKS) >= 3
    for needle in ("## Goals", "## Timings", "pretrain ssamba", "pretrain ssast", "## Corpus", "Exactly what was run",
                   '"max_minutes": 0.05', "Quick mode"):
        assert needle in report
    assert f"report: {(out / 'report.md').resolve()}" in run.stdout


def test_pictures_and_self_contained_html(demo):
    out, _ = demo
    names = ("loss_curves", "probe_accuracy", "finetune_accuracy", "accuracy_by_layer", "embedding_pca",
             "confusion_matrix")
    for name in names:
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(names)
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from elsewhere
    for task in TASKS:
        assert task in page


def test_fine_tuning_stage_and_per_layer_probes(demo):
    out, _ = demo
    saved = json.loads((out / "results.json").read_text())
    runs = saved["finetune_runs"]
    assert {(r["task"], r["method"]) for r in runs} == {
        (t, m) for t in TASKS for m in METHODS if m.endswith("fine-tuned")}
    assert all(r["steps"] >= 1 for r in runs)
    # quick mode: 4 layers = 2 SSAMBA layer pairs; the first pair is probed on its own
    assert {(r["task"], r["method"]) for r in saved["per_layer"]} == {
        (t, f"SSAMBA {which}, layer 0") for t in TASKS for which in ("random init", "pretrained")}
    report = (out / "report.md").read_text()
    assert "## Fine-tuning" in report and "Clean protocol" in report
    assert "head on the per-band time means of the last layer, starting at random" in report  # the default recipe, stated


def test_clean_protocol_leaves_test_clips_out_of_pretraining(tmp_path):
    from ssamba.demo.corpus import load_corpus_dir
    from ssamba.demo.pipeline import _pretraining_paths
    from ssamba.demo.tasks import TaskConfig, build_demo_tasks

    corpus = load_corpus_dir(make_synthetic_corpus(tmp_path / "corpus"))
    tasks = build_demo_tasks(corpus.files, TaskConfig(seed=0, max_per_class=10))
    test = {i.path.resolve() for t in tasks for i in t.test_items}
    train = {i.path.resolve() for t in tasks for i in t.train_items}
    for pretrain_files in (None, 40):
        clean = set(_pretraining_paths(corpus, tasks, DemoConfig(pretrain_files=pretrain_files)))
        assert test and not clean & test
        if pretrain_files is None:  # a clip can train one task and test another: then it is left out
            assert train - test <= clean
    everything = set(_pretraining_paths(corpus, tasks, DemoConfig(exclude_test_audio=False)))
    assert test <= everything


def test_checkpoints_load_and_differ_from_the_random_start(demo):
    out, _ = demo
    for model in ("ssamba", "ssast"):
        encoder = ssamba.load(out / model / "encoder")
        assert encoder.config.arch == model and encoder.config.depth == 4 and encoder.config.input_tdim == 200
        run_config = json.loads((out / model / "checkpoints" / "last" / "config.json").read_text())
        assert run_config["train"]["max_minutes"] == 0.05
        start = random_init_encoder({k: run_config[k] for k in ("model", "pretrain", "data", "train")})
        moved = [not torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), start.state_dict().values())]
        assert any(moved)  # pretraining changed the weights it started from
        rows = (out / model / "metrics.csv").read_text().splitlines()
        assert len(rows) >= 2 and rows[0].startswith("step")


def test_random_init_is_the_exact_start_of_pretraining():
    cfg = DemoConfig.quick_preset().run_config("ssamba")
    a, b = random_init_encoder(cfg), random_init_encoder(cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    other = random_init_encoder({**cfg, "train": {**cfg["train"], "seed": 1}})
    assert not torch.equal(a.state_dict()["patch_embed.proj.weight"], other.state_dict()["patch_embed.proj.weight"])


def test_demo_embeddings_match_the_library_embedder(tmp_path):
    """Official mean pooling from cached fbanks == ssamba.embed on the files (short and long clips)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((0.7, 2.0, 4.3)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        paths.append(path)
    torch.manual_seed(0)
    model = ssamba.create_model("ssast_tiny", depth=1, input_tdim=128).eval()
    store = compute_fbanks(paths, None, workers=1)
    fbanks = [f.astype(np.float32) for f in store.fbanks]  # the float16 cache is tested for closeness below
    ours = encoder_embeddings(model, fbanks)
    reference = embed([str(p) for p in paths], model)
    np.testing.assert_allclose(ours["mean"], reference, atol=1e-4)
    assert ours["mean_std"].shape == (3, 2 * 192)
    np.testing.assert_allclose(ours["mean_std"][:, :192], ours["mean"])
    assert (ours["mean_std"][:, 192:] > 0).all()
    cached = encoder_embeddings(model, store.fbanks)["mean"]
    np.testing.assert_allclose(cached, reference, atol=2e-2)


def test_fbank_cache_is_reused_and_logmel_statistics(tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, np.sin(np.arange(16000 * 3) * 0.05).astype(np.float32), 16000)
    first = compute_fbanks([path], tmp_path / "cache", max_seconds=2.0, workers=1)
    assert len(first.fbanks[0]) == 200  # cut to the first 2 s
    (cache_file,) = (tmp_path / "cache").glob("fbank-*.npz")
    stamp = cache_file.stat().st_mtime_ns
    second = compute_fbanks([path], tmp_path / "cache", max_seconds=2.0, workers=1)
    assert cache_file.stat().st_mtime_ns == stamp and np.array_equal(first.fbanks[0], second.fbanks[0])
    x = first.fbanks[0].astype(np.float32)
    stats = logmel_statistics(first.fbanks)
    np.testing.assert_allclose(stats[0], np.concatenate([x.mean(0), x.std(0)]), rtol=1e-5, atol=1e-6)


def test_bootstrap_interval():
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0)
    low, high = bootstrap_ci(np.array([1.0, 0.0] * 100))
    assert 0.39 < low < 0.5 < high < 0.61  # binomial sd at n=200 is 0.035 -> about ±0.07


def test_fetch_failure_is_one_line_telling_how_to_pass_a_corpus(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no apt-get on PATH
    run = subprocess.run(CLI + ["demo", "--quick", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2
    lines = [row for row in run.stderr.splitlines() if row.startswith("ssamba demo: error:")]
    assert len(lines) == 1 and "--corpus DIR" in lines[0] and "apt-get" in lines[0]
    assert "Traceback" not in run.stderr
