"""``run_pretraining``: config file + audio data -> a pretraining run directory (what ``ssamba pretrain`` calls).

A run config has four sections (see ``configs/pretrain/*.yaml``)::

    model:    {name: ssamba_tiny, overrides: {drop_path_rate: 0.1}}   # ssamba.create_model arguments
    pretrain: MaskedPatchConfig fields (masking, num_masked, mask_ratio, objective, mse_weight, two_pass,
              valid_num_masked)
    data:     DataConfig fields (crop_frames, features, format, valid, valid_clips)
    train:    TrainConfig fields (lr, batch_size, max_steps, ...)

The run directory gets ``metrics.csv``, ``loss_curve.png``, ``checkpoints/{last,best,step-N}`` and, with a
validation split, ``eval.csv`` (its metrics at every plateau check).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ssamba.errors import ConfigError, DataError
from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining
from ssamba.train.checkpointing import load_checkpoint
from ssamba.train.config import TrainConfig, apply_overrides, from_dict, load_yaml, to_dict
from ssamba.train.trainer import Trainer

log = logging.getLogger(__name__)

SECTIONS = ("model", "pretrain", "data", "train")
#: data sources named by an address prefix -> builder(address, DataConfig, seed) of the training data;
#: adapters above the core add theirs (``ssamba.integrations.hf_streams``: "hf-dataset:")
SOURCE_BUILDERS: dict[str, Callable[[str, Any, int], Any]] = {}


@dataclass
class DataConfig:
    """How audio becomes training examples: crop length in frames (1024 = 10.24 s), feature preset,
    and the source format ("auto": a folder of ``*.tar`` is read as WebDataset shards).

    Validation (drives LR halving and ``best`` through ``train.monitor``): ``valid`` is a folder or
    manifest of its own (``valid_clips`` is then ignored), or ``valid_clips`` clips are held out of a
    folder/manifest source (a seeded choice, the same on resume); neither = no validation (the
    training loss is monitored).
    """

    crop_frames: int = 1024
    features: str = "pretrain"
    format: str = "auto"
    source: str | None = None
    valid: str | None = None
    valid_clips: int = 0
    dynamic_padding: bool = False   # short clips keep their length; batches padded to their longest

    def __post_init__(self) -> None:
        if self.valid_clips < 0:
            raise ConfigError(f"data.valid_clips={self.valid_clips}: must be 0 or more")


def load_run_config(config: dict | str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """A run config dict from a YAML path or dict, with ``key=value`` overrides, validated section by section."""
    raw = load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    raw = apply_overrides(raw, overrides)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config section (expected {', '.join(SECTIONS)})")
    model = dict(raw.get("model") or {})
    if "name" not in model:
        raise ConfigError("model.name: missing (e.g. ssamba_tiny, ssast_tiny)")
    bad = sorted(set(model) - {"name", "overrides"})
    if bad:
        raise ConfigError(f"model.{bad[0]}: unknown setting (expected name, overrides)")
    return {
        "model": {"name": model["name"], "overrides": dict(model.get("overrides") or {})},
        "pretrain": to_dict(from_dict(MaskedPatchConfig, raw.get("pretrain"), "pretrain")),
        "data": to_dict(from_dict(DataConfig, raw.get("data"), "data")),
        "train": to_dict(from_dict(TrainConfig, raw.get("train"), "train")),
    }


#: Settings a resumed run may change: how long it trains and how it runs, not what it learns.
RESUMABLE_KEYS = frozenset({
    "data.source", "train.max_steps", "train.epochs", "train.max_minutes", "train.num_workers",
    "train.num_threads", "train.device", "train.progress", "train.tensorboard", "train.log_every",
    "train.checkpoint_every", "train.keep_last"})


def config_changes(saved: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between a run's saved config and ``run`` (both validated
    section dicts), leaving out ``RESUMABLE_KEYS``: a resume must continue the same training.
    Settings the saved run did not record (added in a later version) are not compared."""
    def flat(section: str, values: Any) -> dict[str, Any]:
        values = json.loads(json.dumps(values or {}))  # tuples vs lists: compare as saved
        return {f"{section}.{k}": v for k, v in values.items()}

    changed = []
    for section in SECTIONS:
        old, new = flat(section, saved.get(section)), flat(section, run.get(section))
        changed += [k for k in sorted(old) if k not in RESUMABLE_KEYS and old[k] != new.get(k)]
    return changed


def build_dataset(data: str | Path, config: DataConfig, seed: int):
    """Folder/manifest -> ``AudioCropDataset``; folder of ``*.tar`` (or a .tar) -> streaming ``ShardStream``."""
    from ssamba.data.audio_folder import AudioCropDataset
    from ssamba.data.shards import ShardStream

    builder = source_builder(data)
    if builder is not None:
        return builder(str(data), config, seed)
    path = Path(data)
    fmt = config.format
    if fmt == "auto":
        is_shards = path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar")))
        fmt = "shards" if is_shards else "folder"
    if fmt == "shards":
        return ShardStream(path, crop_frames=config.crop_frames, features=config.features, seed=seed,
                           dynamic=config.dynamic_padding)
    if fmt == "folder":
        return AudioCropDataset(path, crop_frames=config.crop_frames, features=config.features,
                                dynamic=config.dynamic_padding)
    raise ConfigError(f"data.format={fmt!r}: must be auto, folder or shards")


def source_builder(data: str | Path):
    """The registered builder for an address ``data`` (see ``SOURCE_BUILDERS``), else None."""
    return next((build for prefix, build in SOURCE_BUILDERS.items() if str(data).startswith(prefix)), None)


def build_datasets(data: str | Path, config: DataConfig, seed: int):
    """(training data, validation data or None): ``build_dataset`` plus the validation split that
    ``config.valid`` / ``config.valid_clips`` ask for (validation crops are fixed by the Trainer)."""
    from ssamba.data.audio_folder import AudioCropDataset, list_audio

    if config.valid:  # a validation set of its own: nothing is held out
        return build_dataset(data, config, seed), AudioCropDataset(config.valid, config.crop_frames, config.features,
                                                                   config.dynamic_padding)
    train = build_dataset(data, config, seed)
    if not config.valid_clips:
        return train, None
    if not isinstance(train, AudioCropDataset):
        raise ConfigError(f"data.valid_clips={config.valid_clips}: {data} is streamed (shards); "
                          "give data.valid=FOLDER (a validation set) or data.valid_clips=0")
    files = list_audio(data)
    if config.valid_clips >= len(files):
        raise ConfigError(f"data.valid_clips={config.valid_clips}: {data} has only {len(files)} clips")
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:config.valid_clips])
    pick = lambda keep: [f for i, f in enumerate(files) if (i in held) == keep]  # noqa: E731
    return (AudioCropDataset(pick(False), config.crop_frames, config.features, config.dynamic_padding),
            AudioCropDataset(pick(True), config.crop_frames, config.features, config.dynamic_padding))


def build_task(config: dict[str, Any], encoder: torch.nn.Module | None = None) -> MaskedPatchPretraining:
    """The encoder (``ssamba.create_model(model.name, **model.overrides)``) wrapped in the pretraining task."""
    from ssamba.models import create_model

    torch.manual_seed(config["train"]["seed"])
    if encoder is None:
        overrides = dict(config["model"]["overrides"])
        overrides.setdefault("input_tdim", config["data"]["crop_frames"])
        encoder = create_model(config["model"]["name"], **overrides)
    return MaskedPatchPretraining(encoder, MaskedPatchConfig(**config["pretrain"]), seed=config["train"]["seed"])


def run_pretraining(config: dict | str | Path | None, data: str | Path | None, out_dir: str | Path,
                    resume: bool = False, overrides: list[str] | None = None,
                    encoder: torch.nn.Module | None = None) -> dict[str, Any]:
    """Pretrain an encoder with the masked-patch objective; returns the trainer's summary.

    ``config``: YAML path or dict (may be None with ``resume=True``: the run's saved config is
    used). ``data``: folder, manifest or shard folder (None on resume: the saved ``data.source``).
    ``resume``: continue ``out_dir`` from ``checkpoints/last`` exactly where it stopped.
    ``encoder``: use this module instead of building ``model.name`` (tests, custom encoders).
    """
    out_dir = Path(out_dir)
    saved = load_checkpoint(out_dir, with_state=False)[1] if resume else None
    if config is None:
        if not resume:
            raise ConfigError("config: required unless resuming a run")
        config = {k: saved[k] for k in SECTIONS if k in saved}
    run = load_run_config(config, overrides)
    data = data if data is not None else run["data"]["source"]
    if data is None:
        raise ConfigError("data: no audio folder, manifest or shard folder given")
    run["data"]["source"] = str(data) if source_builder(data) else str(Path(data).resolve())
    if run["data"]["valid"]:
        run["data"]["valid"] = str(Path(run["data"]["valid"]).resolve())
    if saved is not None:
        changed = config_changes(saved, run)
        if changed:
            raise ConfigError(f"{out_dir}: resuming with a different config ({', '.join(changed)}); "
                              "only how long and how it runs may change (e.g. train.max_steps)")
    train = TrainConfig(**run["train"])
    dataset, valid = build_datasets(data, DataConfig(**run["data"]), train.seed)
    if not isinstance(dataset, torch.utils.data.IterableDataset) and len(dataset) < train.batch_size:
        raise DataError(f"{data}: {len(dataset)} clips, fewer than one batch (train.batch_size={train.batch_size})")
    task = build_task(run, encoder)
    if valid is not None and train.monitor not in task.metric_names():
        raise ConfigError(f"train.monitor={train.monitor!r}: pretrain.objective={task.config.objective} reports "
                          f"{', '.join(sorted(task.metric_names()))}")
    from ssamba.data.padding import pad_collate

    dynamic = {"collate_fn": pad_collate} if run["data"].get("dynamic_padding") else {}
    trainer = Trainer(task, dataset, train, out_dir, eval_data=valid, run_config=run, **dynamic)
    return trainer.fit(resume=resume)


def load_pretrained_task(checkpoint: str | Path) -> MaskedPatchPretraining:
    """Rebuild the pretraining model (encoder + heads) from a pretraining checkpoint or run directory."""
    from ssamba.models.config import EncoderConfig
    from ssamba.models.encoder import AudioEncoder

    weights, config, _ = load_checkpoint(checkpoint, with_state=False)
    if not config.get("encoder"):
        raise ConfigError(f"{checkpoint}: checkpoint has no encoder config")
    encoder = AudioEncoder.from_config(EncoderConfig.from_dict(config["encoder"]))
    task = MaskedPatchPretraining(encoder, MaskedPatchConfig(**config["pretrain"]))
    task.load_state_dict(weights)
    return task
