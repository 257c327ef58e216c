"""What fine-tuning, probing and evaluation share: which runs a dataset gives (one train/test run,
or one per held-out fold) and how their results are collected and written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ssamba.checkpoints.format import atomic_write_text
from ssamba.data.manifests import AudioItem, DatasetSpec, Manifest
from ssamba.downstream.metrics import (
    aggregate_folds,
    confusion_matrix,
    write_confusion_matrix_png,
    write_results_markdown,
)
from ssamba.errors import ConfigError

Split = list[AudioItem]


def plan_runs(manifest: Manifest, folds: list[int] | None = None) -> list[tuple[str, Split, Split, Split]]:
    """(name, train, valid, test) item lists: one run for datasets with train/test splits, one per
    test fold (leave-one-fold-out) for datasets with folds."""
    spec = manifest.spec
    if "train" in spec.splits and "test" in spec.splits:
        valid = manifest.select("valid") if "valid" in spec.splits else []
        return [("all", manifest.select("train"), valid, manifest.select("test"))]
    if spec.folds:
        chosen = spec.folds if folds is None else folds
        runs = []
        for fold in chosen:
            train, test = manifest.fold_split(fold)
            runs.append((f"fold{fold}", train, [], test))
        return runs
    raise ConfigError(f"{spec.name}: dataset has neither train/test splits nor folds; use split folders or a fold column")


class RunResults:
    """Metrics per run and, for single-label data, the confusion matrix summed over runs."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.per_run: dict[str, dict] = {}
        self.confusion: np.ndarray | None = None

    def add(self, name: str, metrics: dict, scores: np.ndarray, targets: np.ndarray) -> None:
        """Record run ``name``'s metrics and its test predictions (scores, targets)."""
        self.per_run[name] = metrics
        if not self.spec.multi_label:
            m = confusion_matrix(scores, targets, self.spec.num_classes)
            self.confusion = m if self.confusion is None else self.confusion + m

    def write(self, out_dir: Path, extra: dict[str, Any]) -> dict:
        """results.json, results.md (one row per run + mean ± std for several) and confusion.png;
        returns results.json's dict."""
        spec = self.spec
        results: dict[str, Any] = {"dataset": spec.name, "num_classes": spec.num_classes, "runs": self.per_run, **extra}
        rows = dict(self.per_run)
        if len(self.per_run) > 1:
            results["aggregate"] = aggregate_folds(list(self.per_run.values()))
            rows["mean ± std"] = results["aggregate"]
        if self.confusion is not None:
            results["confusion_matrix"] = self.confusion.tolist()
            write_confusion_matrix_png(self.confusion, spec.class_names, out_dir / "confusion.png", title=spec.name)
        write_results_markdown(rows, out_dir / "results.md", title=f"{spec.name} ({spec.num_classes} classes)")
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
        return results
