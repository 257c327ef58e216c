"""Linear probing: clip embeddings of a frozen encoder, computed once and cached to disk, then an
L2-regularised logistic regression (softmax for single-label, per-class sigmoid for multi-label)
fitted full-batch with L-BFGS in torch.

The encoder is any module mapping a (B, T, F) fbank batch to (B, D) embeddings, e.g.
`ssamba.create_model(...)` / `ssamba.load(...)` (whose forward is the mean of the non-CLS tokens).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssamba.checkpoints.format import atomic_write
from ssamba.downstream.metrics import classification_metrics
from ssamba.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class ProbeConfig:
    """Logistic-regression settings. Objective: mean loss + weight_decay / 2 * ||W||^2 (bias not
    penalised) on standardised embeddings; `max_iter` L-BFGS iterations. `weight_decay=None`
    uses 1 / N (N training clips), the same penalty as scikit-learn's default C = 1.
    `dynamic_padding`: embed each clip at its own length (up to the preset's window), batches
    padded to their longest clip with per-clip lengths, instead of padding every clip to the window."""

    weight_decay: float | None = None
    max_iter: int = 500
    standardize: bool = True
    batch_size: int = 16
    dynamic_padding: bool = False


@torch.no_grad()
def extract_embeddings(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    collate_fn: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen encoder over a dataset of (features, target) pairs ->
    (embeddings (N, D) float32, targets (N, C) float32), in dataset order. With
    ``collate_fn=data.padding.pad_collate`` the encoder is called as ``encoder(features, lengths=)``."""
    if isinstance(encoder, nn.Module):
        encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_fn)
    embeddings, targets = [], []
    for features, target, *lengths in loader:
        pooled = encoder(features.to(device), lengths=lengths[0]) if lengths else encoder(features.to(device))
        embeddings.append(pooled.float().cpu())
        targets.append(target.float())
    return torch.cat(embeddings).numpy(), torch.cat(targets).numpy()


def fingerprint(*parts: object) -> str:
    """A short hash identifying what produced a cache (model id, item paths, feature config...)."""
    digest = hashlib.sha1()
    for part in parts:
        digest.update(repr(part).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cached_embeddings(
    path: str | Path,
    key: str,
    compute: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Load (embeddings, targets) from the .npz at `path` when it was written for the same `key`,
    else call `compute()` once and save its result there (atomically)."""
    path = Path(path)
    if path.is_file():
        try:
            with np.load(path) as cache:
                if str(cache["key"]) == key:
                    return cache["embeddings"], cache["targets"]
        except (OSError, KeyError, ValueError):
            pass  # unreadable or foreign cache: recompute below
    embeddings, targets = compute()
    if len(embeddings) != len(targets):
        raise DataError(f"{path}: {len(embeddings)} embeddings for {len(targets)} targets")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, embeddings=embeddings, targets=targets, key=np.array(key))

    atomic_write(path, write)
    return embeddings, targets


class LinearProbe(nn.Module):
    """Logistic regression on (standardised) embeddings."""

    def __init__(self, dim: int, num_classes: int, multi_label: bool = False, config: ProbeConfig | None = None) -> None:
        super().__init__()
        self.config = config or ProbeConfig()
        self.multi_label = multi_label
        self.linear = nn.Linear(dim, num_classes, dtype=torch.float64)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(dim, dtype=torch.float64))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits (N, C)."""
        return self.linear((torch.as_tensor(embeddings, dtype=torch.float64) - self.mean) / self.scale)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets)
        return nn.functional.cross_entropy(logits, targets)  # targets: one-hot or soft rows

    def fit(self, embeddings, targets) -> "LinearProbe":
        """Minimise mean loss + weight_decay / 2 * ||W||^2 with full-batch L-BFGS."""
        x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise DataError(f"probe: embeddings {tuple(x.shape)} and targets {tuple(y.shape)} must be (N, D) and (N, C)")
        if self.config.standardize:
            self.mean.copy_(x.mean(dim=0))
            self.scale.copy_(x.std(dim=0).clamp_min(1e-8))
        decay = self.config.weight_decay if self.config.weight_decay is not None else 1.0 / len(x)
        optimizer = torch.optim.LBFGS(
            self.linear.parameters(), lr=1.0, max_iter=self.config.max_iter, tolerance_grad=1e-9,
            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = self.loss(self(x), y) + 0.5 * decay * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return self

    @torch.no_grad()
    def predict_scores(self, embeddings) -> np.ndarray:
        """Class probabilities (softmax, or sigmoid per class for multi-label)."""
        logits = self(torch.as_tensor(np.asarray(embeddings)))
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)).numpy()


def fit_and_evaluate_probe(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    multi_label: bool = False,
    config: ProbeConfig | None = None,
) -> tuple[dict[str, float], np.ndarray, LinearProbe]:
    """Fit a probe on train (embeddings, targets), score test -> (metrics, test scores, probe)."""
    x_train, y_train = train
    probe = LinearProbe(x_train.shape[1], y_train.shape[1], multi_label, config).fit(x_train, y_train)
    scores = probe.predict_scores(test[0])
    return classification_metrics(scores, test[1], multi_label=multi_label), scores, probe


# ----------------------------------------------------------------------------- recipe


def probe(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path,
    dataset: str | None = "auto",
    config: ProbeConfig | None = None,
    features: str | None = None,
    cache: str | Path | None = None,
    folds: list[int] | None = None,
    device: str = "cpu",
    encoder: nn.Module | None = None,
    manifest=None,
) -> dict:
    """Linear probe of a frozen encoder (`ssamba.load(model)`, or `encoder` when given) on `data`
    (or on `manifest`, a `Manifest` already read, e.g. from a `datasets` dataset).

    Embeddings of every clip are computed once and cached (`cache`, default
    `out_dir/embeddings.npz`, keyed by model file, feature preset and clip list); then one
    logistic regression per run: train -> test for split datasets, leave-one-fold-out for fold
    datasets. Writes results.json, results.md and confusion.png (single-label) into `out_dir`."""
    from ssamba.data.classification import AudioClassificationDataset
    from ssamba.data.datasets import read_dataset
    from ssamba.downstream.runs import RunResults, plan_runs
    from ssamba.features import FeatureConfig, FeatureExtractor

    config = config or ProbeConfig()
    out_dir = Path(out_dir)
    manifest = manifest or read_dataset(dataset, data)
    spec = manifest.spec
    if manifest.skipped:
        log.warning("%s: %d listed entries skipped (first: %s: %s)", spec.name, len(manifest.skipped), *manifest.skipped[0])
    preset = features or spec.feature_preset
    if encoder is None:
        from ssamba.models import load

        encoder = load(model)
    encoder = encoder.to(device).eval()
    from ssamba.checkpoints.hub import is_address, resolve

    model_path = resolve(model) if is_address(model) else Path(model)   # a Hub file's cache path names its commit
    stamp = (str(model_path.resolve()), model_path.stat().st_mtime_ns) if model_path.exists() else str(model)
    key = fingerprint(stamp, preset, [str(item.path) for item in manifest.items],
                      *(["dynamic_padding"] if config.dynamic_padding else []))

    def compute() -> tuple[np.ndarray, np.ndarray]:
        from ssamba.data.padding import NaturalLength, pad_collate

        extractor = FeatureExtractor(FeatureConfig.preset(preset))
        if config.dynamic_padding:
            extractor = NaturalLength(extractor, encoder.config.tshape)
        ds = AudioClassificationDataset(manifest.items, spec.num_classes, extractor)
        return extract_embeddings(lambda x, **lengths: encoder(x, **lengths), ds, batch_size=config.batch_size,
                                  device=device, collate_fn=pad_collate if config.dynamic_padding else None)

    embeddings, targets = cached_embeddings(Path(cache) if cache else out_dir / "embeddings.npz", key, compute)
    row = {item: i for i, item in enumerate(manifest.items)}
    results = RunResults(spec)
    for name, train_items, _valid, test_items in plan_runs(manifest, folds):
        train_rows = [row[item] for item in train_items]
        test_rows = [row[item] for item in test_items]
        metrics, scores, _ = fit_and_evaluate_probe(
            (embeddings[train_rows], targets[train_rows]), (embeddings[test_rows], targets[test_rows]), spec.multi_label, config)
        results.add(name, metrics, scores, targets[test_rows])
    out_dir.mkdir(parents=True, exist_ok=True)
    from ssamba.config import to_dict

    extra = {"model": str(model), "probe": to_dict(config), "features": preset, "skipped_entries": len(manifest.skipped)}
    return results.write(out_dir, extra)
