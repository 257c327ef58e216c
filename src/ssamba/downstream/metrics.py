"""Evaluation metrics for the downstream tasks (numpy), plus writers for a confusion-matrix PNG
and a Markdown results table.

Single-label: accuracy, top-k accuracy, macro-F1, confusion matrix.
Multi-label (AudioSet): mAP (mean over classes of average precision), mean ROC AUC and
d' = sqrt(2) * Phi^-1(AUC). Cross-validation: `aggregate_folds` -> mean and std per metric.
Scores are (N, C) arrays (logits or probabilities); labels are (N,) class indices or (N, C)
0/1 (multi-hot) arrays. Torch tensors are accepted anywhere an array is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ssamba.checkpoints.format import atomic_write, atomic_write_text
from ssamba.errors import DataError


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def _class_indices(labels, num_classes: int | None = None) -> np.ndarray:
    """(N,) indices, or the argmax of (N, C) one-hot / soft (mixup) targets."""
    labels = _array(labels)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64)


# ----------------------------------------------------------------------------- single-label


def accuracy(scores, labels) -> float:
    """Fraction of rows whose highest score is the true class."""
    scores = _array(scores)
    return float((scores.argmax(axis=1) == _class_indices(labels)).mean())


def top_k_accuracy(scores, labels, k: int = 5) -> float:
    """Fraction of rows whose true class is among the k highest scores."""
    scores = _array(scores)
    if not 1 <= k <= scores.shape[1]:
        raise DataError(f"top_k_accuracy: k={k} must be in 1..{scores.shape[1]} (number of classes)")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == _class_indices(labels)[:, None]).any(axis=1).mean())


def confusion_matrix(predictions, labels, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    pred, true = _class_indices(predictions), _class_indices(labels)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def macro_f1(predictions, labels, num_classes: int | None = None) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions (F1 = 0 for a class
    that is never predicted correctly). Predictions: (N,) indices or (N, C) scores."""
    pred, true = _class_indices(predictions), _class_indices(labels)
    c = int(max(pred.max(), true.max()) + 1) if num_classes is None else num_classes
    m = confusion_matrix(pred, true, c)
    tp = np.diag(m).astype(np.float64)
    support_true, support_pred = m.sum(axis=1), m.sum(axis=0)
    present = (support_true + support_pred) > 0
    denominator = support_true + support_pred
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1[present].mean())


# ----------------------------------------------------------------------------- multi-label


def average_precision(scores, truth) -> float:
    """Average precision of one class: sum over distinct score thresholds (high to low) of
    (recall step) x precision, the step-wise area used by scikit-learn. NaN if no positives."""
    scores, truth = _array(scores).astype(np.float64), _array(truth) > 0.5
    if not truth.any():
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # threshold ends
    tp = np.cumsum(truth)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores, truth) -> float:
    """Area under the ROC curve of one class = P(score of a positive > score of a negative),
    ties counted half (Mann-Whitney U with average ranks). NaN unless both classes occur."""
    scores, truth = _array(scores).astype(np.float64), _array(truth) > 0.5
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    for s, e in zip(starts, ends):  # average rank (1-based) within each tie group
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def d_prime(auc: float) -> float:
    """Sensitivity index from AUC: sqrt(2) * Phi^-1(AUC) (Phi^-1 = standard normal quantile)."""
    return float(math.sqrt(2.0) * torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)))


def _per_class(fn, scores, targets) -> np.ndarray:
    scores, targets = _array(scores), _array(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise DataError(f"scores {scores.shape} and multi-hot targets {targets.shape} must both be (N, C)")
    return np.array([fn(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def mean_average_precision(scores, targets) -> float:
    """mAP: mean of the per-class average precision over classes with at least one positive."""
    return float(np.nanmean(_per_class(average_precision, scores, targets)))


def mean_roc_auc(scores, targets) -> float:
    """Mean per-class ROC AUC over classes with both positives and negatives."""
    return float(np.nanmean(_per_class(roc_auc, scores, targets)))


# ----------------------------------------------------------------------------- bundles


def classification_metrics(scores, targets, multi_label: bool = False) -> dict[str, float]:
    """All metrics of a task. Multi-label: mAP, mAUC, d_prime (from the mean AUC, as the
    official AST/SSAST code). Single-label: accuracy, top5 (with >= 5 classes), macro_f1."""
    scores = _array(scores)
    if multi_label:
        auc = mean_roc_auc(scores, targets)
        return {"mAP": mean_average_precision(scores, targets), "mAUC": auc, "d_prime": d_prime(auc)}
    out = {"accuracy": accuracy(scores, targets), "macro_f1": macro_f1(scores, targets, scores.shape[1])}
    if scores.shape[1] >= 5:
        out["top5"] = top_k_accuracy(scores, targets, 5)
    return out


def aggregate_folds(fold_results: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric over folds: {"mean", "std" (sample std, ddof=1; 0 for one fold), "n"}.
    Only metrics present in every fold are aggregated."""
    if not fold_results:
        raise DataError("aggregate_folds: no fold results")
    names = [k for k in fold_results[0] if all(k in r for r in fold_results)]
    out = {}
    for name in names:
        values = np.array([float(r[name]) for r in fold_results])
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(values.mean()), "std": std, "n": int(values.size)}
    return out


# ----------------------------------------------------------------------------- writers


def write_confusion_matrix_png(matrix, class_names: Sequence[str], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Save a row-normalised confusion-matrix heat map (counts annotated for <= 20 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = _array(matrix)
    n = matrix.shape[0]
    if len(class_names) != n:
        raise DataError(f"{path}: {len(class_names)} class names for a {n}x{n} confusion matrix")
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.0, min(0.35 * n + 2, 24.0))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=90, fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), labels=class_names, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return path


def _format(value) -> str:
    if isinstance(value, Mapping) and "mean" in value:
        return f"{value['mean']:.4f} ± {value['std']:.4f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def results_markdown(rows: Mapping[str, Mapping[str, object]], title: str | None = None) -> str:
    """A Markdown table: one row per key of `rows` (e.g. "fold 1", ..., "mean ± std"), one
    column per metric. Values may be numbers or {"mean", "std"} dicts from `aggregate_folds`."""
    columns: list[str] = []
    for metrics in rows.values():
        columns += [k for k in metrics if k not in columns]
    lines = [f"## {title}", ""] if title else []
    lines.append("| run | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_format(metrics[c]) if c in metrics else "" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results_markdown(rows: Mapping[str, Mapping[str, object]], path: str | Path, title: str | None = None) -> Path:
    """Write `results_markdown(rows, title)` to `path` (atomically: a full disk leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, results_markdown(rows, title))
    return path
