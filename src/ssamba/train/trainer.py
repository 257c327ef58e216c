"""The one training loop: pretraining, fine-tuning and probing differ only by the task and config.

A *task* is an ``nn.Module`` whose ``forward(batch)`` returns a dict with a scalar ``loss`` and any
scalar metrics. Optionally it has ``generators() -> {name: torch.Generator}`` (e.g. the masking
RNG) whose states are seeded per rank and saved with checkpoints.

The trainer does: AdamW or Adam, linear warm-up then plateau halving (on a monitored eval metric,
or the training loss), cosine or per-epoch step decay, gradient accumulation and clipping, a
global or per-process batch, optional bf16 autocast, DDP under torchrun (rank 0 logs and saves),
an epoch-end callback, ``metrics.csv`` per optimizer step (+ TensorBoard when installed;
``metrics_log``), a tqdm bar, a loss-curve PNG at the end, and atomic checkpoints that resume
bit-exactly (data order is a function of ``(seed, epoch)``; the position inside the epoch and all
RNG states are restored).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ssamba.errors import ConfigError, TrainingError
from ssamba.train.checkpointing import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from ssamba.train.config import TrainConfig, to_dict
from ssamba.train.distributed import (
    DistInfo,
    EpochSampler,
    all_agree,
    all_reduce_mean,
    gather_objects,
    init_distributed,
    per_process_batch,
    shutdown,
)
from ssamba.train.metrics_log import EVAL_FILE, METRICS_FILE, MetricsLog, append_csv, plot_metrics
from ssamba.train.schedule import LRSchedule

log = logging.getLogger(__name__)

__all__ = ["LRSchedule", "Trainer", "default_collate"]


def default_collate(items: list) -> Any:
    """Stack a list of dicts of tensors (or tensors) into a batch."""
    return torch.utils.data.default_collate(items)


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: python/numpy RNGs seeded from the loader's (deterministic) base seed."""
    seed = torch.initial_seed() % (2 ** 32)
    random.seed(seed)
    np.random.seed(seed)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return _batch_size(next(iter(batch.values())))
    return _batch_size(batch[0])


class Trainer:
    """Train ``task`` on ``train_data`` with ``config``, writing logs and checkpoints under ``out_dir``.

    ``train_data``: a map-style dataset whose ``__getitem__`` takes ``(index, item_seed)`` pairs
    (see ``EpochSampler``), or an ``IterableDataset`` with ``set_epoch(epoch)`` that shards itself
    across ranks/workers. ``run_config``: extra sections (model, task, data) stored in every
    checkpoint's config.json next to the train config. ``on_epoch_end(epoch)``: called on every rank
    after each complete pass over map-style data (``epoch`` counts from 1), e.g. to score a
    validation split and keep the best epoch's weights.
    """

    def __init__(self, task: nn.Module, train_data: Dataset, config: TrainConfig, out_dir: str | Path, *,
                 eval_data: Dataset | None = None, collate_fn: Callable | None = None,
                 run_config: dict[str, Any] | None = None,
                 on_epoch_end: Callable[[int], None] | None = None) -> None:
        self.task, self.train_data, self.eval_data = task, train_data, eval_data
        self.on_epoch_end = on_epoch_end
        self.config, self.out_dir = config, Path(out_dir)
        self.collate_fn = collate_fn or default_collate
        self.run_config = dict(run_config or {})
        self.step = self.epoch = self.batch_in_epoch = 0
        self.window: list[float] = []  # training losses since the last plateau check
        self.has_best = False
        self.batch_size = config.batch_size  # per process; set from the world size by fit()

    # --- setup -------------------------------------------------------------------------------
    def _generators(self) -> dict[str, torch.Generator]:
        fn = getattr(self.task, "generators", None)
        return fn() if callable(fn) else {}

    def _seed_everything(self) -> None:
        seed = self.config.seed * 1000 + self.info.rank
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)
        for i, g in enumerate(self._generators().values()):
            g.manual_seed(seed * 31 + i + 1)

    def _steps_per_epoch(self) -> int | None:
        if isinstance(self.train_data, IterableDataset):
            return None
        sampler = EpochSampler(len(self.train_data), self.batch_size, self.config.seed,
                               self.info.rank, self.info.world_size)
        return sampler.batches_per_epoch // self.config.grad_accum

    def _total_steps(self) -> int:
        per_epoch = self._steps_per_epoch()
        candidates = [self.config.max_steps] if self.config.max_steps else []
        if per_epoch is not None:
            candidates.append(per_epoch * self.config.epochs)
        if not candidates:
            raise ConfigError("train.max_steps: required for streaming (iterable) datasets")
        return min(candidates)

    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        c = self.config
        common = dict(batch_size=self.batch_size, num_workers=c.num_workers, collate_fn=self.collate_fn,
                      worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(c.seed * 7 + epoch),
                      drop_last=True, persistent_workers=False)
        if isinstance(self.train_data, IterableDataset):
            if hasattr(self.train_data, "set_epoch"):
                self.train_data.set_epoch(epoch)
            return DataLoader(self.train_data, **common)
        sampler = EpochSampler(len(self.train_data), self.batch_size, c.seed, self.info.rank, self.info.world_size)
        sampler.set_epoch(epoch, start_batch)
        return DataLoader(self.train_data, sampler=sampler, **common)

    # --- checkpoints -------------------------------------------------------------------------
    def _config_json(self) -> dict[str, Any]:
        """Run config + train config + the encoder's config, so ``ssamba.load(run_dir)`` works."""
        out = {**self.run_config, "train": to_dict(self.config)}
        encoder = getattr(self.task, "encoder", None)
        if encoder is not None and hasattr(encoder, "config") and hasattr(encoder.config, "to_dict"):
            out["encoder"] = encoder.config.to_dict()
        return out

    def _save(self, best: bool = False) -> None:
        rngs = gather_objects(capture_rng(self._generators()), self.info)
        if not self.info.is_main:
            return
        state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                 "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                 "window": list(self.window), "has_best": self.has_best or best, "rng": rngs,
                 "world_size": self.info.world_size}
        save_checkpoint(self.out_dir, self.step, self.task.state_dict(), self._config_json(), state,
                        best=best, keep_last=self.config.keep_last)
        self.has_best = self.has_best or best

    def _resume(self) -> None:
        weights, _, state = load_checkpoint(self.out_dir)
        missing, unexpected = self.task.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise TrainingError(f"{self.out_dir}: checkpoint does not match the model "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.window, self.has_best = list(state["window"]), bool(state["has_best"])
        if state["world_size"] != self.info.world_size:
            log.warning("resuming with %d processes, checkpoint was written by %d: data order differs",
                        self.info.world_size, state["world_size"])
        rngs = state["rng"]
        restore_rng(rngs[self.info.rank] if self.info.rank < len(rngs) else rngs[0], self._generators())
        log.info("resumed from step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch_in_epoch)

    # --- logging -----------------------------------------------------------------------------
    # --- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: Dataset) -> dict[str, float]:
        """Mean of the task's metrics over ``data`` (fixed masking seed, training RNG untouched)."""
        gens = self._generators()
        saved = {k: g.get_state() for k, g in gens.items()}
        for g in gens.values():
            g.manual_seed(12345)
        self.task.eval()
        sums: dict[str, float] = {}
        count = 0
        loader = DataLoader(data, batch_size=self.batch_size, collate_fn=self.collate_fn,
                            sampler=[(i, i) for i in range(len(data))])
        for batch in loader:
            with self._autocast():
                out = self.task(_to_device(batch, self.info.device))
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
        for k, g in gens.items():
            g.set_state(saved[k])
        self.task.train()
        return {k: v / max(count, 1) for k, v in sums.items()}

    def _autocast(self):
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``max_steps``, ``epochs`` or ``max_minutes``; returns a summary (steps, last metrics, run dir)."""
        c = self.config
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        self.info: DistInfo = init_distributed(c.device)
        try:
            self.batch_size = per_process_batch(c.batch_size, self.info.world_size, c.global_batch)
            return self._fit(resume)
        finally:
            shutdown(self.info)

    def _param_groups(self) -> list[dict]:
        """The task's ``param_groups()`` (each may carry an ``lr_scale``, e.g. a head at 3x), else one group."""
        groups = self.task.param_groups() if hasattr(self.task, "param_groups") else [
            {"params": list(self.task.parameters())}]
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        return [g for g in groups if g["params"]]

    def _fit(self, resume: bool) -> dict[str, Any]:
        c, info = self.config, self.info
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._seed_everything()
        self.task.to(info.device)
        optimizer = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(self._param_groups(), lr=c.lr, weight_decay=c.weight_decay, betas=tuple(c.betas))
        total = self._total_steps()
        self.schedule = LRSchedule(c, total, self._steps_per_epoch())
        if resume:
            self._resume()
        if info.is_main:
            self.metrics_log = MetricsLog(self.out_dir, self.config.tensorboard, resume_step=self.step if resume else None)
        model = self.task
        if info.distributed:
            model = nn.parallel.DistributedDataParallel(
                self.task, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        bar = None
        if info.is_main and c.progress:
            from tqdm import tqdm
            timed = c.max_minutes and not c.max_steps  # a time budget: the step count is not known ahead
            bar = tqdm(total=None if timed else total, initial=self.step, desc="train", file=sys.stderr,
                       dynamic_ncols=True)
        last: dict[str, float] = {}
        t_start = time.time()
        deadline = t_start + 60 * c.max_minutes if c.max_minutes else math.inf
        out_of_time = False
        try:
            while self.step < total and self.epoch < c.epochs:
                batches = iter(self._loader(self.epoch, self.batch_in_epoch))
                if isinstance(self.train_data, IterableDataset):  # streaming: skip what was consumed
                    for _ in range(self.batch_in_epoch):
                        next(batches, None)
                while self.step < total:
                    micro = [b for b in (next(batches, None) for _ in range(c.grad_accum)) if b is not None]
                    if not all_agree(len(micro) == c.grad_accum, info):
                        break
                    t0 = time.time()
                    last = self._train_step(model, micro)
                    self.batch_in_epoch += len(micro)
                    self.step += 1
                    clips = sum(_batch_size(b) for b in micro) * info.world_size
                    last.update(lr=self.optimizer.param_groups[0]["lr"],
                                clips_per_s=clips / max(time.time() - t0, 1e-9))
                    if info.is_main and self.step % c.log_every == 0:
                        self.metrics_log.write({"step": self.step, "epoch": self.epoch, **last,
                                       "elapsed_s": round(time.time() - t_start, 3)})
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}",
                                        clips_s=f"{last['clips_per_s']:.1f}")
                    self._after_step(last["loss"])
                    out_of_time = all_agree(time.time() >= deadline, info)
                    if out_of_time:
                        log.info("stopping at step %d: train.max_minutes=%s reached", self.step, c.max_minutes)
                        break
                else:  # step budget reached: at an epoch's end when its batches are used up
                    per_epoch = self._steps_per_epoch()
                    if per_epoch and self.batch_in_epoch >= per_epoch * c.grad_accum:
                        self._epoch_end(self.epoch + 1)
                    break
                if out_of_time:  # stopped inside the epoch: keep its position for a resume
                    break
                self._epoch_end(self.epoch + 1)
                self.epoch += 1
                self.batch_in_epoch = 0
            self._save(best=not self.has_best)
        finally:
            if bar is not None:
                bar.close()
            if getattr(self, "metrics_log", None) is not None:
                self.metrics_log.close()
        if info.is_main:
            plot_metrics(self.out_dir / METRICS_FILE, self.out_dir / "loss_curve.png")
        return {"steps": self.step, "epochs": self.epoch, "metrics": last, "run_dir": str(self.out_dir)}

    def _epoch_end(self, epoch: int) -> None:
        if self.on_epoch_end is not None and not isinstance(self.train_data, IterableDataset):
            self.on_epoch_end(epoch)
            self.task.train()

    def _train_step(self, model: nn.Module, micro: list) -> dict[str, float]:
        """Forward/backward over the micro-batches, check the loss, clip, and take one optimizer step."""
        c, info = self.config, self.info
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            sync = contextlib.nullcontext()
            if info.distributed and i < len(micro) - 1:
                sync = model.no_sync()
            with sync:
                with self._autocast():
                    out = model(_to_device(batch, info.device))
                (out["loss"] / len(micro)).backward()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / len(micro)
        keys = sorted(sums)
        values = all_reduce_mean(torch.stack([sums[k] for k in keys]), info).cpu()
        metrics = {k: float(v) for k, v in zip(keys, values)}
        if not math.isfinite(metrics["loss"]):
            raise TrainingError(f"loss became {metrics['loss']} at step {self.step + 1}; stopped without "
                                f"saving, the last good checkpoint in {self.out_dir / 'checkpoints'} is intact")
        if c.grad_clip:
            norm = nn.utils.clip_grad_norm_(self.task.parameters(), c.grad_clip)
            metrics["grad_norm"] = float(norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": metrics.pop("loss"), **metrics}

    def _after_step(self, loss: float) -> None:
        """Plateau check (and eval) every ``plateau_every`` steps; checkpoints when due or improved."""
        c = self.config
        self.window.append(loss)
        best = False
        if self.step % c.plateau_every == 0:
            if self.eval_data is not None:
                ev = self.evaluate(self.eval_data)
                if c.monitor not in ev:
                    raise ConfigError(f"train.monitor={c.monitor!r}: the task reports {', '.join(sorted(ev))}")
                monitored = ev[c.monitor] if c.monitor_mode == "min" else -ev[c.monitor]
                if self.info.is_main:
                    append_csv(self.out_dir / EVAL_FILE, {"step": self.step, **ev})
            else:
                monitored = float(np.mean(self.window)) if self.window else math.inf
            self.window = []
            best = self.schedule.observe(monitored)
        if best or self.step % c.checkpoint_every == 0:
            self._save(best=best)
