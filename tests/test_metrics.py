"""Metrics against independent references (scikit-learn, scipy) on random data, plus writers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn import metrics as skm

from ssamba.downstream import metrics as M
from ssamba.errors import DataError


def multilabel_data(seed: int, n: int = 200, c: int = 12, ties: bool = False):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.2).astype(np.float32)
    scores = rng.normal(size=(n, c)) + 1.2 * targets
    if ties:
        scores = np.round(scores, 1)  # many tied scores
    targets[:, 0] = 0  # a class without positives: ignored by mAP / AUC
    return scores, targets


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_map_auc_dprime_match_sklearn_scipy(seed, ties):
    scores, targets = multilabel_data(seed, ties=ties)
    valid = targets.sum(axis=0) > 0
    ref_ap = skm.average_precision_score(targets[:, valid], scores[:, valid], average=None)
    ref_auc = skm.roc_auc_score(targets[:, valid], scores[:, valid], average=None)
    for c_out, c in enumerate(np.flatnonzero(valid)):
        assert M.average_precision(scores[:, c], targets[:, c]) == pytest.approx(ref_ap[c_out], abs=1e-10)
        assert M.roc_auc(scores[:, c], targets[:, c]) == pytest.approx(ref_auc[c_out], abs=1e-10)
    assert M.mean_average_precision(scores, targets) == pytest.approx(ref_ap.mean(), abs=1e-10)
    assert M.mean_roc_auc(scores, targets) == pytest.approx(ref_auc.mean(), abs=1e-10)
    result = M.classification_metrics(torch.from_numpy(scores), torch.from_numpy(targets), multi_label=True)
    assert result["mAP"] == pytest.approx(ref_ap.mean(), abs=1e-6)
    assert result["d_prime"] == pytest.approx(np.sqrt(2) * norm.ppf(ref_auc.mean()), abs=1e-6)


@pytest.mark.parametrize("auc", [0.5, 0.6, 0.93, 0.999])
def test_d_prime_matches_scipy(auc):
    assert M.d_prime(auc) == pytest.approx(np.sqrt(2) * norm.ppf(auc), abs=1e-9)


def test_single_label_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    n, c = 300, 10
    labels = rng.integers(0, c, n)
    labels[labels == 7] = 6  # class 7 never occurs in the labels ...
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += 1.0
    pred = scores.argmax(axis=1)
    assert M.accuracy(scores, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    one_hot = np.eye(c)[labels]
    assert M.accuracy(scores, one_hot) == pytest.approx(skm.accuracy_score(labels, pred))
    assert M.top_k_accuracy(scores, labels, 5) == pytest.approx(skm.top_k_accuracy_score(labels, scores, k=5, labels=range(c)))
    assert M.macro_f1(pred, labels, c) == pytest.approx(skm.f1_score(labels, pred, average="macro", zero_division=0))
    np.testing.assert_array_equal(M.confusion_matrix(pred, labels, c), skm.confusion_matrix(labels, pred, labels=range(c)))
    result = M.classification_metrics(scores, labels)
    assert set(result) == {"accuracy", "macro_f1", "top5"}
    assert result["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro", zero_division=0))


def test_top_k_bad_k():
    with pytest.raises(DataError, match="k=5"):
        M.top_k_accuracy(np.zeros((3, 4)), [0, 1, 2], k=5)


def test_aggregate_folds():
    folds = [{"accuracy": a, "macro_f1": f} for a, f in [(0.8, 0.7), (0.9, 0.75), (0.85, 0.8), (0.7, 0.6), (0.75, 0.65)]]
    folds[2]["extra"] = 1.0  # only in one fold: not aggregated
    agg = M.aggregate_folds(folds)
    assert set(agg) == {"accuracy", "macro_f1"}
    accs = np.array([0.8, 0.9, 0.85, 0.7, 0.75])
    assert agg["accuracy"]["mean"] == pytest.approx(accs.mean())
    assert agg["accuracy"]["std"] == pytest.approx(accs.std(ddof=1))
    assert agg["accuracy"]["n"] == 5
    assert M.aggregate_folds([{"accuracy": 0.5}])["accuracy"] == {"mean": 0.5, "std": 0.0, "n": 1}
    with pytest.raises(DataError):
        M.aggregate_folds([])


def test_writers(tmp_path):
    matrix = np.array([[5, 1, 0], [0, 3, 2], [1, 0, 4]])
    png = M.write_confusion_matrix_png(matrix, ["a", "b", "c"], tmp_path / "cm" / "confusion.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] >= 300 and image.shape[1] >= 300
    with pytest.raises(DataError, match="2 class names"):
        M.write_confusion_matrix_png(matrix, ["a", "b"], tmp_path / "x.png")

    agg = M.aggregate_folds([{"accuracy": 0.8}, {"accuracy": 0.9}])
    rows = {"fold 1": {"accuracy": 0.8}, "fold 2": {"accuracy": 0.9}, "mean ± std": agg}
    md = M.write_results_markdown(rows, tmp_path / "results.md", title="ESC-50")
    lines = md.read_text().splitlines()
    assert lines[0] == "## ESC-50"
    assert lines[2] == "| run | accuracy |"
    assert lines[4] == "| fold 1 | 0.8000 |"
    assert lines[6] == f"| mean ± std | 0.8500 ± {np.std([0.8, 0.9], ddof=1):.4f} |"
