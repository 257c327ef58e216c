"""Training configuration: the ``TrainConfig`` dataclass, YAML loading and ``key=value`` overrides.

A run config is a nested mapping of sections (``model``, ``pretrain``, ``data``, ``train`` ...);
each section fills a dataclass. Overrides use dotted keys (``train.lr=5e-4``); values are parsed
as YAML scalars, so ``true``, ``1e-4`` and ``[0.9, 0.99]`` work as expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ssamba.config import check_choice, from_dict, to_dict  # noqa: F401  (re-exported for recipes)
from ssamba.errors import ConfigError

SCHEDULES = ("plateau", "cosine", "step", "constant")
OPTIMIZERS = ("adamw", "adam")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop settings shared by pretraining, fine-tuning and probing.

    Defaults follow the SSAST/SSAMBA pretraining recipe (AdamW 1e-4, wd 5e-8, betas 0.95/0.999,
    1000 warm-up steps, LR halved when the monitored value stops improving).
    ``plateau_every``: steps between plateau checks (on the eval loss when there is eval data,
    else the mean training loss of the window). ``max_steps`` (optimizer steps) bounds the run
    as well as ``epochs``; whichever comes first ends it. ``max_minutes`` (wall clock of one
    ``fit`` call) bounds it too: a time budget that means the same on a fast or a busy machine.
    ``batch_size``: clips per process and micro-batch; with ``global_batch`` it is the clips per
    micro-batch summed over all processes (divided by the world size under torchrun, which must
    divide it), as the paper's 64 clips per step on several GPUs.
    ``optimizer``: "adamw" (decoupled weight decay, the official pretraining) or "adam" (L2 weight
    decay, the official fine-tuning). ``schedule="step"``: the official fine-tuning decay, x
    ``lrscheduler_decay`` from 0-based epoch ``lrscheduler_start``, every ``lrscheduler_step`` epochs.
    ``monitor`` / ``monitor_mode``: the eval metric (a key of the task's outputs) that drives
    plateau halving and the ``best`` checkpoint when there is eval data, and whether lower
    (``min``) or higher (``max``) is better; without eval data the mean training loss is used.
    """

    seed: int = 0
    epochs: int = 10
    max_steps: int | None = None
    max_minutes: float | None = None
    batch_size: int = 64
    global_batch: bool = False
    lr: float = 1e-4
    weight_decay: float = 5e-8
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 1000
    schedule: str = "plateau"
    plateau_every: int = 4000
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    min_lr: float = 0.0
    optimizer: str = "adamw"
    lrscheduler_start: int = 5
    lrscheduler_step: int = 1
    lrscheduler_decay: float = 0.85
    monitor: str = "loss"
    monitor_mode: str = "min"
    grad_clip: float | None = None
    grad_accum: int = 1
    precision: str = "fp32"
    device: str = "auto"
    num_workers: int = 2
    num_threads: int | None = None
    log_every: int = 1
    checkpoint_every: int = 1000
    keep_last: int = 3
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives lists
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        if self.lrscheduler_start < 0 or self.lrscheduler_step < 1 or not 0 < self.lrscheduler_decay <= 1:
            raise ConfigError(f"train.lrscheduler_*: need start >= 0, step >= 1, 0 < decay <= 1 (got "
                              f"{self.lrscheduler_start}, {self.lrscheduler_step}, {self.lrscheduler_decay})")
        check_choice("train.monitor_mode", self.monitor_mode, ("min", "max"))
        check_choice("train.precision", self.precision, PRECISIONS)
        for name in ("batch_size", "grad_accum", "checkpoint_every", "log_every", "plateau_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be a positive integer")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"train.max_minutes={self.max_minutes}: must be positive (or null for no limit)")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr}: must be positive")
        if self.keep_last < 1:
            raise ConfigError(f"train.keep_last={self.keep_last}: must be at least 1")


BUILTIN_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def resolve_config(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a bundled recipe (``ssamba_tiny_cpu``, ``pretrain/ssamba_tiny_cpu``, ``esc50``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.with_suffix("") if path.suffix in (".yaml", ".yml") else path
    for candidate in [BUILTIN_CONFIGS / f"{stem}.yaml", *sorted(BUILTIN_CONFIGS.glob(f"*/{stem.name}.yaml"))]:
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in BUILTIN_CONFIGS.glob("*/*.yaml"))
    raise ConfigError(f"{name_or_path}: config file not found (bundled recipes: {', '.join(names)})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config (a path or a bundled recipe name) into a dict; missing or malformed files raise ConfigError."""
    path = resolve_config(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return _numbers(data)


def _numbers(value: Any) -> Any:
    """Turn strings such as '1e-4' (YAML 1.1 reads them as strings) into floats, recursively."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            return value
    return value


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``config`` with dotted ``key=value`` overrides applied (values parsed as YAML)."""
    import copy

    result = copy.deepcopy(config)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=5e-4")
        try:
            value = _numbers(yaml.safe_load(raw)) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return result
