"""Fine-tuning recipe: encoder (from a checkpoint or a named size) + head (mean, or mean‖std, of the
non-CLS tokens of the last layer, or a learned weighted sum of every layer's, -> LayerNorm -> Linear;
random, or started as a linear probe), trained on the shared Trainer, then scored on the test split
or on each cross-validation fold.

Outputs of `finetune(...)` under `out_dir` (per fold under `out_dir/fold<k>/` for k-fold data):
`model/` (encoder `config.json` + `model.safetensors`, `head.safetensors`, `task.json`),
`results.json`, `results.md` and `confusion.png` (single-label) in `out_dir`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssamba.checkpoints.format import atomic_write, atomic_write_text
from ssamba.data.classification import AudioClassificationDataset
from ssamba.data.datasets import read_dataset
from ssamba.data.manifests import DatasetSpec, Manifest
from ssamba.data.padding import NaturalLength, pad_collate
from ssamba.downstream.chunks import UtteranceChunks, predict_chunked
from ssamba.downstream.head_init import HEAD_INITS, init_head_from_probe
from ssamba.downstream.layer_sum import LAYER_CHOICES, WeightedLayerSum, layer_embeddings
from ssamba.downstream.metrics import classification_metrics
from ssamba.downstream.runs import RunResults, plan_runs
from ssamba.downstream.selection import SELECTIONS, EpochSelector
from ssamba.errors import CheckpointError, ConfigError
from ssamba.features.augment import AugmentConfig, Augmenter
from ssamba.models.encoder import POOLINGS, pool_tokens, pooled_dim
from ssamba.train.config import TrainConfig, from_dict, to_dict

log = logging.getLogger(__name__)

LOSSES = ("ce", "bce")


@dataclass
class FinetuneConfig:
    """What to fine-tune on and how (the optimiser/schedule live in TrainConfig).

    dataset: reader name for `ssamba.data.datasets.read_dataset` ("esc50", "speechcommands_v2", ...).
    model: named size used when no `--init` checkpoint is given.
    fstride/tstride: patch strides for fine-tuning (10 = overlapping patches, as the paper); the
      pretrained positional embedding is resized to the new grid on load.
    loss: "ce" (softmax cross-entropy) or "bce" (per-class sigmoid, multi-label and Speech Commands).
    head_lr_mult: the head's LR = lr x head_lr_mult (the Trainer honours each group's `lr_scale`).
    augment: an AugmentConfig preset name ("esc50", "speechcommands", "audioset", "none") or fields.
    features: FeatureConfig preset; None = the dataset's own.
    folds: test folds to run for k-fold datasets (None = all).
    freeze_encoder: train only the head on frozen features (a linear-probe variant); the encoder
      then stays in eval mode (no drop path).
    layers: "last" (the final layer's tokens) or "weighted_sum" (learned softmax weights over every
      layer's output, s3prl's `-s hidden_states`; the weights train with the head).
    pooling: what the head reads of the tokens: "mean" (the official embedding), "mean_std"
      (mean and standard deviation concatenated; keeps speaker/channel statistics) or "bands"
      (per frequency band the mean over time, concatenated; keeps the spectral envelope).
    head_init: "random", or "probe": the head starts as a logistic regression fitted on the frozen
      encoder's training-set features (LP-FT; `ssamba.downstream.head_init`).
    eval_chunks: score validation and test utterances whole, in chunks of the feature preset's
      length (`ssamba.downstream.chunks`); training still reads one crop per clip.
    select: which weights score the test set ("last", "best" validation epoch by `select_metric`,
      or "average" of epochs wa_start..wa_end); see `ssamba.downstream.selection`.
    dynamic_padding: clips keep their own length (up to the feature preset's window) and each
      batch is padded to its longest clip, the encoder running with per-clip lengths
      (`ssamba.data.padding`); default False: every clip padded to the window, as the official
      recipes (and the checkpoints fine-tuned with them) do.
    """

    dataset: str = "folder"
    model: str = "ssamba_tiny"
    fstride: int = 10
    tstride: int = 10
    loss: str = "ce"
    head_lr_mult: float = 1.0
    augment: Any = "none"
    features: str | None = None
    folds: list[int] | None = None
    freeze_encoder: bool = False
    layers: str = "last"
    pooling: str = "mean"
    head_init: str = "random"
    eval_chunks: bool = False
    eval_batch_size: int = 16
    model_overrides: dict = field(default_factory=dict)
    select: str = "last"
    select_metric: str = "accuracy"
    wa_start: int = 12
    wa_end: int = 40
    dynamic_padding: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"finetune.loss={self.loss!r}: must be one of {', '.join(LOSSES)}")
        if self.head_lr_mult <= 0:
            raise ConfigError(f"finetune.head_lr_mult={self.head_lr_mult}: must be positive")
        if self.layers not in LAYER_CHOICES:
            raise ConfigError(f"finetune.layers={self.layers!r}: must be one of {', '.join(LAYER_CHOICES)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"finetune.pooling={self.pooling!r}: must be one of {', '.join(POOLINGS)}")
        if self.head_init not in HEAD_INITS:
            raise ConfigError(f"finetune.head_init={self.head_init!r}: must be one of {', '.join(HEAD_INITS)}")
        if self.select not in SELECTIONS:
            raise ConfigError(f"finetune.select={self.select!r}: must be one of {', '.join(SELECTIONS)}")

    def augment_config(self) -> AugmentConfig:
        if isinstance(self.augment, str):
            return AugmentConfig.preset(self.augment)
        return from_dict(AugmentConfig, self.augment, "finetune.augment")


class ClassificationHead(nn.Module):
    """LayerNorm -> Linear on the pooled clip embedding; with ``num_layers``, the embedding is first
    the learned weighted sum of the per-layer embeddings (a list)."""

    def __init__(self, dim: int, num_classes: int, num_layers: int | None = None) -> None:
        super().__init__()
        self.layer_sum = WeightedLayerSum(num_layers) if num_layers else None
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, num_classes)

    def features(self, embedding: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """What the Linear reads: the normalised (layer-summed) embedding."""
        if self.layer_sum is not None:
            embedding = self.layer_sum(embedding)
        return self.norm(embedding)

    def forward(self, embedding: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return self.linear(self.features(embedding))


class FinetuneTask(nn.Module):
    """Trainer task: batch (features (B, T, F), targets (B, C)) -> {"loss", "accuracy"}."""

    def __init__(self, encoder: nn.Module, num_classes: int, loss: str = "ce", head_lr_mult: float = 1.0,
                 freeze_encoder: bool = False, layers: str = "last", pooling: str = "mean") -> None:
        super().__init__()
        if layers not in LAYER_CHOICES:
            raise ConfigError(f"finetune.layers={layers!r}: must be one of {', '.join(LAYER_CHOICES)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"finetune.pooling={pooling!r}: must be one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.layers, self.pooling = layers, pooling
        dim = pooled_dim(encoder, pooling)
        self.head = ClassificationHead(dim, num_classes, encoder.num_layers if layers == "weighted_sum" else None)
        self.loss_name = loss
        self.head_lr_mult = head_lr_mult
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> "FinetuneTask":
        """As nn.Module.train, but a frozen encoder always stays in eval mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def embed(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
        """What the head reads: the pooled clip embedding, or one per layer for the weighted sum
        (``lengths``: the clips' frames in a dynamically padded batch)."""
        if self.layers == "weighted_sum":
            return layer_embeddings(self.encoder, features, self.pooling, lengths)
        return pool_tokens(self.encoder, self.encoder.forward_features(features, lengths=lengths), self.pooling, lengths)

    def logits(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(features, lengths))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: softmax for "ce", per-class sigmoid for "bce"."""
        return torch.softmax(logits, dim=-1) if self.loss_name == "ce" else torch.sigmoid(logits)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """``batch``: (features, targets), or (features, targets, lengths) from ``pad_collate``."""
        features, targets, *lengths = batch
        logits = self.logits(features, lengths[0] if lengths else None)
        if self.loss_name == "ce":
            loss = nn.functional.cross_entropy(logits, targets)  # soft (mixup) targets allowed
        else:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets)
        accuracy = (logits.argmax(dim=-1) == targets.argmax(dim=-1)).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach()}

    def param_groups(self) -> list[dict]:
        """Encoder at the base LR, head at lr x head_lr_mult (`lr_scale`)."""
        return [
            {"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr_scale": 1.0},
            {"params": list(self.head.parameters()), "lr_scale": self.head_lr_mult},
        ]


# ----------------------------------------------------------------------------- building blocks


def build_encoder(config: FinetuneConfig, target_length: int, init: str | Path | None = None) -> nn.Module:
    """The encoder to fine-tune, in train mode: loaded from `init` (a `save_pretrained` directory or an
    official .pth; positional embedding resized to the fine-tuning grid) or a fresh named model."""
    from ssamba.models import create_model, load

    geometry = dict(fstride=config.fstride, tstride=config.tstride, input_tdim=target_length, **config.model_overrides)
    encoder = load(init, **geometry) if init else create_model(config.model, **geometry)
    return encoder.train()


def make_extractor(preset: str):
    from ssamba.features import FeatureConfig, FeatureExtractor

    return FeatureExtractor(FeatureConfig.preset(preset))


def make_datasets(items_extractor, spec: DatasetSpec, noise_paths, seed: int, dynamic: bool, min_frames: int):
    """A factory ``(items, augment) -> AudioClassificationDataset``: clips padded to the preset's
    window, or with ``dynamic`` at their own length (``data.padding.NaturalLength``)."""
    extractor = NaturalLength(items_extractor, min_frames) if dynamic else items_extractor
    return lambda items, aug: AudioClassificationDataset(
        items, spec.num_classes, extractor, augment=aug, noise_paths=noise_paths, seed=seed)


@torch.no_grad()
def predict(task: FinetuneTask, dataset: Dataset, batch_size: int = 16, collate_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, C), targets (N, C)) of a task over a dataset, in dataset order, in eval mode
    (``collate_fn=pad_collate`` for clips of their own lengths)."""
    was_training = task.training
    task.eval()
    device = next(task.parameters()).device
    scores, targets = [], []
    for features, target, *lengths in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn):
        scores.append(task.scores(task.logits(features.to(device), lengths[0] if lengths else None)).float().cpu())
        targets.append(target)
    task.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()


def save_finetuned(task: FinetuneTask, directory: Path, spec: DatasetSpec, config: FinetuneConfig) -> Path:
    """Write the encoder (`save_pretrained`), the head and a `task.json` describing classes and loss."""
    directory.mkdir(parents=True, exist_ok=True)
    task.encoder.save_pretrained(directory)
    head = {k: v.detach().cpu().contiguous() for k, v in task.head.state_dict().items()}
    atomic_write(directory / "head.safetensors", lambda tmp: save_file(head, tmp))
    meta = {"dataset": spec.name, "class_names": spec.class_names, "multi_label": spec.multi_label,
            "feature_preset": config.features or spec.feature_preset, "loss": config.loss, "layers": config.layers,
            "pooling": config.pooling, "eval_chunks": config.eval_chunks, "dynamic_padding": config.dynamic_padding}
    atomic_write_text(directory / "task.json", json.dumps(meta, indent=2))
    return directory


def load_finetuned(directory: str | Path) -> tuple[FinetuneTask, dict]:
    """A fine-tuned task (eval mode) and its task.json metadata, from `save_finetuned`'s directory."""
    from ssamba.models import load

    directory = Path(directory)
    meta_path = directory / "task.json"
    if not meta_path.is_file() or not (directory / "head.safetensors").is_file():
        raise CheckpointError(f"{directory}: not a fine-tuned model directory (needs task.json and head.safetensors)")
    meta = json.loads(meta_path.read_text())
    task = FinetuneTask(load(directory), len(meta["class_names"]), meta["loss"], layers=meta.get("layers", "last"),
                        pooling=meta.get("pooling", "mean"))
    task.head.load_state_dict(load_file(str(directory / "head.safetensors")))
    return task.eval(), meta


# ----------------------------------------------------------------------------- config files


def load_finetune_config(path: str | Path, overrides: list[str] | None = None) -> tuple[FinetuneConfig, TrainConfig]:
    """A recipe YAML with sections `finetune:` (FinetuneConfig) and `train:` (TrainConfig), with
    dotted `key=value` overrides (e.g. `train.lr=5e-5`); unknown keys raise ConfigError."""
    from ssamba.train.config import apply_overrides, load_yaml

    values = apply_overrides(load_yaml(path), overrides)
    unknown = sorted(set(values) - {"finetune", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r} (expected finetune, train)")
    return from_dict(FinetuneConfig, values.get("finetune"), "finetune"), from_dict(TrainConfig, values.get("train"), "train")


# ----------------------------------------------------------------------------- runs


def score_run(task: FinetuneTask, test: Dataset, spec: DatasetSpec, batch_size: int,
              collate_fn=None) -> tuple[dict, np.ndarray, np.ndarray]:
    if isinstance(test, UtteranceChunks):
        scores, targets = predict_chunked(task, test, batch_size)
    else:
        scores, targets = predict(task, test, batch_size, collate_fn)
    return classification_metrics(scores, targets, multi_label=spec.multi_label), scores, targets


def finetune(
    config: FinetuneConfig,
    train_config: TrainConfig,
    data: str | Path,
    out_dir: str | Path,
    init: str | Path | None = None,
    manifest: Manifest | None = None,
) -> dict:
    """Fine-tune on `data` (read with `config.dataset`) and write results; returns results.json's dict."""
    from ssamba.train.trainer import Trainer

    out_dir = Path(out_dir)
    manifest = manifest or read_dataset(config.dataset, data)
    spec = manifest.spec
    if manifest.skipped:
        log.warning("%s: %d listed entries skipped (first: %s: %s)", spec.name, len(manifest.skipped), *manifest.skipped[0])
    preset = config.features or spec.feature_preset
    extractor = make_extractor(preset)
    augmenter = Augmenter(config.augment_config())
    results = RunResults(spec)
    selected: dict[str, dict] = {}
    if config.select == "average" and train_config.epochs < config.wa_start:
        raise ConfigError(f"finetune.wa_start={config.wa_start}: the run trains only {train_config.epochs} epochs")
    for name, train_items, valid_items, test_items in plan_runs(manifest, config.folds):
        run_dir = out_dir if name == "all" else out_dir / name
        encoder = build_encoder(config, extractor.config.target_length or 1024, init)
        task = FinetuneTask(encoder, spec.num_classes, config.loss, config.head_lr_mult, config.freeze_encoder,
                            config.layers, config.pooling)
        fixed = make_datasets(extractor, spec, manifest.noise_paths, train_config.seed, False, 0)
        make = make_datasets(extractor, spec, manifest.noise_paths, train_config.seed, config.dynamic_padding,
                             encoder.config.tshape)
        collate = pad_collate if config.dynamic_padding else None
        if config.head_init == "probe":   # fitted on padded windows (the probe's loader has fixed shapes)
            init_head_from_probe(task, fixed(train_items, None), config.eval_batch_size)
        valid = make(valid_items, None) if valid_items else None
        scored = (lambda items: UtteranceChunks(items, spec.num_classes, extractor.config)) if config.eval_chunks \
            else (lambda items: make(items, None))
        score = None
        if valid is not None and config.select == "best":
            def score(task=task, valid=scored(valid_items)):
                return score_run(task, valid, spec, config.eval_batch_size, collate)[0]
        selector = EpochSelector(task, config.select, score, config.select_metric, config.wa_start, config.wa_end,
                                 log_dir=run_dir)
        trainer = Trainer(
            task, make(train_items, augmenter), train_config, run_dir, eval_data=valid,
            run_config={"finetune": to_dict(config), "dataset": spec.name, "init": str(init) if init else None},
            on_epoch_end=selector, collate_fn=collate,
        )
        summary = trainer.fit()
        selected[name] = selector.apply()
        metrics, scores, targets = score_run(task, scored(test_items), spec, config.eval_batch_size, collate)
        metrics["train_loss_last"] = float(summary["metrics"].get("loss", float("nan")))
        results.add(name, metrics, scores, targets)
        save_finetuned(task, run_dir / "model", spec, config)
        log.info("%s %s: %s", spec.name, name, {k: round(v, 4) for k, v in metrics.items()})
    extra = {"init": str(init) if init else None, "finetune": to_dict(config),
             "skipped_entries": len(manifest.skipped), "selected": selected}
    return results.write(out_dir, extra)


def evaluate(run_dir: str | Path, data: str | Path, out_dir: str | Path | None = None, batch_size: int = 16,
             manifest: Manifest | None = None) -> dict:
    """Score the fine-tuned model(s) of a `finetune` run on `data` (or on `manifest`, already read)
    (the test split, or each fold's held-out fold with that fold's model) and write results.json /
    results.md / confusion.png."""
    run_dir = Path(run_dir)
    model_dirs = {"all": run_dir / "model"} if (run_dir / "model").is_dir() else {
        p.name: p / "model" for p in sorted(run_dir.glob("fold*")) if (p / "model").is_dir()}
    if not model_dirs:
        raise CheckpointError(f"{run_dir}: no fine-tuned model (expected model/ or fold*/model/)")
    run_config = json.loads((next(iter(model_dirs.values())) / "task.json").read_text())
    results_path = run_dir / "results.json"
    finetune_cfg = json.loads(results_path.read_text()).get("finetune", {}) if results_path.is_file() else {}
    manifest = manifest or read_dataset(finetune_cfg.get("dataset", "auto"), data)
    spec = manifest.spec
    known = run_config["class_names"]
    if spec.class_names != known:
        unknown = [name for name in spec.class_names if name not in known]
        if unknown:
            raise ConfigError(f"{data}: label {unknown[0]!r} is unknown to the model in {run_dir} "
                              f"({len(unknown)} unknown; it knows {len(known)} classes)")
        raise ConfigError(f"{data}: classes differ from the model's ({spec.num_classes} vs {len(known)})")
    extractor = make_extractor(run_config["feature_preset"])
    runs = {name: test for name, _, _, test in plan_runs(manifest)}
    results = RunResults(spec)
    for name, model_dir in model_dirs.items():
        if name not in runs:
            raise ConfigError(f"{model_dir}: run {name!r} has no matching split/fold in {data}")
        task, _ = load_finetuned(model_dir)
        dynamic = bool(run_config.get("dynamic_padding"))
        test = UtteranceChunks(runs[name], spec.num_classes, extractor.config) if run_config.get("eval_chunks") \
            else make_datasets(extractor, spec, (), 0, dynamic, task.encoder.config.tshape)(runs[name], None)
        results.add(name, *score_run(task, test, spec, batch_size, pad_collate if dynamic else None))
    out = Path(out_dir) if out_dir else run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    return results.write(out, {"model": str(run_dir)})
