"""Linear probe: parity with scikit-learn's logistic regression, embedding cache, and a probe on a
separable synthetic task (class-dependent tones through the real feature extractor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_layouts import write_csv_dataset
from sklearn.linear_model import LogisticRegression

from ssamba.data.classification import AudioClassificationDataset
from ssamba.data.manifests import read_csv_manifest
from ssamba.downstream.probe import (
    LinearProbe,
    ProbeConfig,
    cached_embeddings,
    extract_embeddings,
    fingerprint,
    fit_and_evaluate_probe,
)


def blobs(seed: int, n: int = 120, d: int = 6, c: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    centers = rng.normal(scale=1.5, size=(c, d))
    x = centers[labels] + rng.normal(size=(n, d)) * np.linspace(0.5, 3.0, d)
    return x.astype(np.float32), np.eye(c, dtype=np.float32)[labels], labels


def test_probe_matches_sklearn_logistic_regression():
    x, y, labels = blobs(0)
    wd = 0.05
    probe = LinearProbe(x.shape[1], 3, config=ProbeConfig(weight_decay=wd, max_iter=1000)).fit(x, y)
    x64 = x.astype(np.float64)  # scikit-learn would otherwise fit in float32
    z = (x64 - x64.mean(0)) / x64.std(0, ddof=1)
    ref = LogisticRegression(C=1.0 / (wd * len(x)), tol=1e-10, max_iter=10000).fit(z, labels)
    np.testing.assert_allclose(probe.predict_scores(x), ref.predict_proba(z), atol=1e-4)
    default = LinearProbe(x.shape[1], 3).fit(x, y)  # weight_decay None = 1/N
    sk_default = LogisticRegression(tol=1e-10, max_iter=10000).fit(z, labels)  # C = 1
    np.testing.assert_allclose(default.predict_scores(x), sk_default.predict_proba(z), atol=1e-4)


def test_multi_label_probe_matches_per_class_sklearn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 5))
    y = (x[:, :3] + 0.5 * rng.normal(size=(150, 3)) > 0).astype(np.float64)
    wd = 0.02
    probe = LinearProbe(5, 3, multi_label=True, config=ProbeConfig(weight_decay=wd, max_iter=1000)).fit(x, y)
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    scores = probe.predict_scores(x)
    for c in range(3):  # mean BCE over N*C entries -> per class C_sk = C / (wd * N * C) * C = 1 / (wd * N * 3)
        ref = LogisticRegression(C=1.0 / (wd * len(x) * 3), tol=1e-10, max_iter=10000).fit(z, y[:, c])
        np.testing.assert_allclose(scores[:, c], ref.predict_proba(z)[:, 1], atol=1e-4)


def test_cached_embeddings_computed_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2), np.eye(3, dtype=np.float32)

    path = tmp_path / "cache" / "train.npz"
    first = cached_embeddings(path, "k1", compute)
    second = cached_embeddings(path, "k1", compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first[0], second[0])
    cached_embeddings(path, "k2", compute)  # another model/data -> recomputed
    assert len(calls) == 2
    assert fingerprint("a", 1) != fingerprint("a", 2) and fingerprint("a", 1) == fingerprint("a", 1)


def test_probe_on_separable_synthetic_task(tmp_path):
    """Tones of 4 classes -> fbank (project FeatureExtractor) -> frozen encoder -> probe >= 90 %."""
    features = pytest.importorskip("ssamba.features")
    extractor = features.FeatureExtractor(features.FeatureConfig.preset("speechcommands"))
    csv_path = write_csv_dataset(tmp_path, ["c0", "c1", "c2", "c3"], per_class=12, folds=2, seconds=0.6)
    manifest = read_csv_manifest(csv_path, feature_preset="speechcommands")
    train_items, test_items = manifest.fold_split(2)

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(128, 32), torch.nn.GELU())  # frozen random frame encoder

    def embed(fbank: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, 32): mean over frames
        return encoder(fbank).mean(dim=1)

    def embeddings(items):
        ds = AudioClassificationDataset(items, manifest.spec.num_classes, extractor)
        return extract_embeddings(embed, ds, batch_size=8)

    train = cached_embeddings(tmp_path / "train.npz", fingerprint("train"), lambda: embeddings(train_items))
    test = cached_embeddings(tmp_path / "test.npz", fingerprint("test"), lambda: embeddings(test_items))
    metrics, scores, _ = fit_and_evaluate_probe(train, test)
    assert scores.shape == (24, 4)
    assert metrics["accuracy"] >= 0.9


def test_probe_recipe_with_tiny_ssamba(tmp_path):
    """`probe()` end to end: a saved (random) tiny SSAMBA, a 2-fold CSV dataset of tones, cached
    embeddings reused by a second run, results written; accuracy >= 90 % on held-out folds."""
    import json

    import ssamba
    from ssamba.downstream.probe import probe

    torch.manual_seed(0)
    ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, scan_backend="chunked").save_pretrained(tmp_path / "model")
    csv_path = write_csv_dataset(tmp_path / "data", ["c0", "c1", "c2", "c3"], per_class=8, folds=2, seconds=1.0, spread=12)
    results = probe(tmp_path / "model", csv_path, tmp_path / "run", features="speechcommands")
    assert set(results["runs"]) == {"fold1", "fold2"}
    assert results["aggregate"]["accuracy"]["mean"] >= 0.9
    cache = tmp_path / "run" / "embeddings.npz"
    stamp = cache.stat().st_mtime_ns
    again = probe(tmp_path / "model", csv_path, tmp_path / "run", features="speechcommands")
    assert cache.stat().st_mtime_ns == stamp  # embeddings not recomputed
    assert again["runs"] == results["runs"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["aggregate"]["accuracy"]["n"] == 2
    assert (tmp_path / "run" / "confusion.png").is_file() and (tmp_path / "run" / "results.md").is_file()
