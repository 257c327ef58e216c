"""ssamba.train: the one training loop (Trainer), its config, checkpoints and multi-process helpers."""

from ssamba.train.config import TrainConfig, apply_overrides, load_yaml
from ssamba.train.metrics_log import plot_metrics, read_metrics
from ssamba.train.trainer import LRSchedule, Trainer

__all__ = ["TrainConfig", "apply_overrides", "load_yaml", "LRSchedule", "Trainer", "plot_metrics", "read_metrics"]
