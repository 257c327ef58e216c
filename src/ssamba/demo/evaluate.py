"""Linear probes on frozen embeddings for each demo task, with a bootstrap confidence interval.

The probe is ``ssamba.downstream.probe.fit_and_evaluate_probe`` (L-BFGS logistic regression on
standardised embeddings). The 95 % interval resamples the test items with replacement
(percentile bootstrap): it says how much the accuracy would move with another draw of test
clips of the same kind, not with another split of the groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ssamba.downstream.probe import ProbeConfig, fit_and_evaluate_probe


@dataclass
class ProbeResult:
    """Accuracy of one feature set on one task, its 95 % CI, predictions and macro-F1."""

    task: str
    method: str
    accuracy: float
    ci_low: float
    ci_high: float
    macro_f1: float
    dim: int
    predictions: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def row(self) -> dict:
        return {"task": self.task, "method": self.method, "accuracy": round(self.accuracy, 4),
                "ci_low": round(self.ci_low, 4), "ci_high": round(self.ci_high, 4),
                "macro_f1": round(self.macro_f1, 4), "dim": self.dim}


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def bootstrap_ci(correct: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of 0/1 `correct` over `resamples` resamplings of the items."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    means = correct[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def probe_task(task: str, method: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
               test_y: np.ndarray, num_classes: int, config: ProbeConfig | None = None,
               seed: int = 0) -> ProbeResult:
    """Fit the probe on train (embeddings, class indices), score test, bootstrap the accuracy."""
    metrics, scores, _ = fit_and_evaluate_probe((train_x, one_hot(train_y, num_classes)),
                                                (test_x, one_hot(test_y, num_classes)), config=config)
    predictions = scores.argmax(axis=1)
    correct = (predictions == test_y).astype(np.float64)
    low, high = bootstrap_ci(correct, seed=seed)
    return ProbeResult(task, method, float(correct.mean()), low, high, float(metrics.get("macro_f1", float("nan"))),
                       int(train_x.shape[1]), predictions, np.asarray(test_y))


def probe_tasks(tasks: Sequence, features: dict[str, np.ndarray], row_of: dict[Path, int],
                config: ProbeConfig | None = None, seed: int = 0) -> list[ProbeResult]:
    """Every (task, feature set) probe. `features[method]` holds one row per clip; `row_of` maps a
    clip's resolved path to its row; tasks are `ssamba.demo.tasks.DemoTask`s."""
    results = []
    for task in tasks:
        index = {c: i for i, c in enumerate(task.classes)}
        (tr_rows, tr_y), (te_rows, te_y) = (
            (np.array([row_of[i.path.resolve()] for i in items]), np.array([index[i.label] for i in items]))
            for items in (task.train_items, task.test_items))
        for method, x in features.items():
            results.append(probe_task(task.name, method, x[tr_rows], tr_y, x[te_rows], te_y, len(task.classes),
                                      config, seed=seed))
    return results
