"""``run_demo``: corpus -> pretrain SSAMBA and SSAST for equal minutes -> linear probes -> report.

Stages run one after another (two torch jobs cannot share two cores) with an explicit thread
count. What each stage does:

1. corpus: the Debian corpus (`ssamba.demo.corpus.build_demo_corpus`, cached) or `--corpus DIR`;
   the held-out-group probe tasks (`ssamba.demo.tasks.build_demo_tasks`).
2. features: the normalised fbank of every clip, once (cached; `ssamba.demo.features`).
3. pretraining: SSAMBA, then SSAST, from scratch on the audio unlabelled, each for the same
   wall-clock budget (`train.max_minutes`), with the masked-patch objective; each run directory
   gets metrics, checkpoints and an `encoder/` that `ssamba.load` / `ssamba embed --model` read.
   Clean protocol (default): no test clip of any task is pretrained on.
4. embeddings: pretrained SSAMBA, the same SSAMBA at its random initialisation (the exact
   weights its pretraining started from), pretrained SSAST, and log-mel statistics; for both
   SSAMBAs also every layer (pair), for accuracy against depth.
5. probes: a linear probe per task and feature set, accuracy with a 95 % bootstrap interval.
6. fine-tuning: pretrained SSAMBA, its random initialisation and pretrained SSAST, each
   fine-tuned on each task with one recipe and the same seconds (`ssamba.demo.finetune`).
   The authors' SSAMBA-tiny weights, when the Hub cache has them or the Hub can be reached, are
   probed (stage 5) and fine-tuned too; offline the report says they were skipped and why
   (`ssamba.demo.official`).
7. report: `report.md`, `report.html` (self-contained) and the PNGs (`ssamba.demo.report`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ssamba.checkpoints.format import atomic_write_text
from ssamba.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("~/.cache/ssamba/demo").expanduser()
ENCODERS = ("ssamba", "ssast")
MIN_CLIP_SECONDS = 0.03  # shorter clips hold no full 25 ms fbank frame at 16 kHz
LAYER_TAG = ", layer "    # method name of a per-layer probe: "<encoder>, layer <k>" (0 = first layer pair)


@dataclass
class DemoConfig:
    """Everything the demo decides. `minutes`: pretraining wall clock per model (SSAMBA and
    SSAST get the same). `depth`: encoder layers for both (shallower learns more per CPU
    minute). `two_pass`: the official joint objective runs two masked passes per step; one pass
    with both heads gives twice the steps per minute on a CPU. `max_per_class`: probe items per
    class and split. `pretrain_files`: cap on pretraining clips (None: all).
    `exclude_test_audio`: leave every task's test clips out of pretraining (the clean protocol).
    `finetune_seconds`: wall clock of each fine-tuning run (0 skips the stage); `finetune_frames`,
    `finetune_lr`, `finetune_pooling` ("mean" / "mean_std" / "bands"), `finetune_head_init` ("random" /
    "probe", LP-FT): the rest of the fine-tuning recipe (`ssamba.demo.finetune.FinetuneRecipe`).
    `official`: also probe and fine-tune the authors' SSAMBA-tiny weights when they can be fetched
    (not in the quick preset: a smoke run does not download 28 MB)."""

    minutes: float = 8.0
    seed: int = 0
    depth: int = 6
    crop_frames: int = 200
    batch_size: int = 16
    lr: float = 5e-4
    warmup_steps: int = 100
    mask_ratio: float = 0.5
    masking: str = "cluster"
    two_pass: bool = False
    max_clip_seconds: float = 10.0
    max_per_class: int | None = 60
    pretrain_files: int | None = None
    probe_weight_decay: float = 1e-3
    probe_max_iter: int = 150
    threads: int = 2
    exclude_test_audio: bool = True
    finetune_seconds: float = 40.0
    finetune_frames: int = 128
    finetune_lr: float = 1e-3
    finetune_pooling: str = "bands"
    finetune_head_init: str = "random"
    official: bool = True
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides: Any) -> "DemoConfig":
        """Smoke-test sizes: 4-layer encoders, seconds of training each, a few hundred clips."""
        base = dict(minutes=0.2, depth=4, warmup_steps=10, max_per_class=10, pretrain_files=300, probe_max_iter=50,
                    finetune_seconds=1.5, official=False, quick=True)
        return cls(**{**base, **overrides})

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise ConfigError(f"--minutes={self.minutes}: must be positive")
        if self.depth < 1 or self.crop_frames < 16 or self.batch_size < 1 or self.threads < 1:
            raise ConfigError("demo config: depth, batch_size, threads must be >= 1 and crop_frames >= 16")
        if self.finetune_seconds < 0 or self.finetune_frames < 16:
            raise ConfigError("demo config: finetune_seconds must be >= 0 and finetune_frames >= 16")

    def finetune_recipe(self):
        """The fine-tuning recipe every encoder and task gets."""
        from ssamba.demo.finetune import FinetuneRecipe

        return FinetuneRecipe(seconds=self.finetune_seconds, frames=self.finetune_frames, lr=self.finetune_lr,
                              pooling=self.finetune_pooling, head_init=self.finetune_head_init, threads=self.threads)

    def run_config(self, model: str) -> dict[str, Any]:
        """The pretraining run config (`ssamba.pretrain.run.load_run_config` sections) of `model`."""
        return {
            "model": {"name": f"{model}_tiny", "overrides": {"depth": self.depth, "input_tdim": self.crop_frames}},
            "pretrain": {"masking": self.masking, "num_masked": None, "mask_ratio": self.mask_ratio,
                         "objective": "joint", "mse_weight": 10.0, "two_pass": self.two_pass},
            "data": {"crop_frames": self.crop_frames, "features": "pretrain", "format": "folder", "source": None},
            "train": {"seed": self.seed, "epochs": 100_000, "max_steps": None, "max_minutes": self.minutes,
                      "batch_size": self.batch_size, "lr": self.lr, "weight_decay": 5e-8,
                      "betas": [0.95, 0.999], "warmup_steps": self.warmup_steps, "schedule": "plateau",
                      "plateau_every": 500, "plateau_patience": 2, "precision": "fp32", "num_workers": 0,
                      "num_threads": self.threads, "checkpoint_every": 100_000, "keep_last": 1,
                      "log_every": 1, "tensorboard": False, "progress": True},
        }


@dataclass
class DemoResult:
    """Where the report is, and what the run measured."""

    out_dir: Path
    report_md: Path
    report_html: Path
    results: list[dict]
    timings: dict[str, float]
    pretraining: dict[str, dict]
    images: dict[str, Path] = field(default_factory=dict)


class _Stages:
    """Wall-clock seconds per stage, announced on stderr as they finish."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say, self.seconds, self.start = say, {}, time.perf_counter()

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.say(f"[demo] {name} ...")
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.say(f"[demo] {name}: {self.seconds[name]:.1f} s")
        return out

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def _load_corpus(corpus: str | Path | None, cache: Path, say: Callable[[str], None]):
    from ssamba.demo.corpus import build_demo_corpus, load_corpus_dir

    if corpus is not None:
        return load_corpus_dir(corpus)
    return build_demo_corpus(cache, progress=lambda line: say(f"[demo]   {line}"))


def _pretraining_paths(corpus, tasks, config: DemoConfig) -> list[Path]:
    """All corpus clips but (with `exclude_test_audio`) every task's test clips; with
    `pretrain_files`, the probe training clips plus a seeded sample of the rest, at most that many."""
    test = {i.path.resolve() for t in tasks for i in t.test_items} if config.exclude_test_audio else set()
    every = [f.path.resolve() for f in corpus.files if f.path.resolve() not in test]
    if config.pretrain_files is None or len(every) <= config.pretrain_files:
        return every
    probe = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items} - test)
    rest = sorted(set(every) - set(probe))
    random.Random(config.seed).shuffle(rest)
    return probe + rest[:max(0, config.pretrain_files - len(probe))]


def pretrain(model: str, fbanks, pad_value: float, config: DemoConfig, out_dir: Path) -> dict[str, Any]:
    """Pretrain `<model>_tiny` for `config.minutes` on `fbanks`; writes the run to `out_dir` and
    the encoder to `out_dir/encoder`. Returns the trainer summary plus the run config."""
    from ssamba.demo.features import FbankCropDataset
    from ssamba.pretrain.run import build_task, load_run_config
    from ssamba.train.config import TrainConfig
    from ssamba.train.trainer import Trainer

    run = load_run_config(config.run_config(model))
    run["data"]["source"] = "demo fbank cache (in memory)"
    task = build_task(run)
    dataset = FbankCropDataset(fbanks, config.crop_frames, pad_value)
    warm_up(task, dataset)
    trainer = Trainer(task, dataset, TrainConfig(**run["train"]), out_dir,
                      run_config={**run, "encoder": task.encoder.config.to_dict()})
    summary = trainer.fit()
    task.encoder.save_pretrained(out_dir / "encoder")
    params = sum(p.numel() for p in task.encoder.parameters())
    return {**summary, "run_config": run, "encoder_parameters": params, "encoder_dir": str(out_dir / "encoder")}


def warm_up(task: torch.nn.Module, dataset) -> None:
    """One forward + backward on two clips before the clock starts, so one-off costs (numba
    compiling the selective scan, allocator growth) are not charged to the model's budget. The
    trainer re-seeds every generator when it starts and the gradients are thrown away."""
    batch = {"fbank": torch.stack([dataset[(i % len(dataset), i)]["fbank"] for i in range(2)])}
    task.train()
    task(batch)["loss"].backward()
    task.zero_grad(set_to_none=True)


def random_init_encoder(run_config: dict[str, Any]) -> torch.nn.Module:
    """The encoder a pretraining run started from (same seed, same construction as `build_task`)."""
    from ssamba.pretrain.run import build_task

    return build_task(copy.deepcopy(run_config)).encoder.eval()


def run_demo(out_dir: str | Path = "demo_out", corpus: str | Path | None = None, quick: bool = False,
             minutes: float | None = None, seed: int = 0, cache: str | Path | None = None,
             config: DemoConfig | None = None, progress: Callable[[str], None] | None = None) -> DemoResult:
    """The whole demo; returns where the report is. `corpus`: a folder of audio instead of the
    Debian corpus. `cache`: where the Debian corpus and the fbank cache live (default
    ~/.cache/ssamba/demo). `minutes`: pretraining wall clock per model. `config` overrides all."""
    from ssamba.demo.embeddings import encoder_embeddings, logmel_statistics
    from ssamba.demo.evaluate import probe_tasks
    from ssamba.demo.features import compute_fbanks
    from ssamba.demo.figures import make_figures
    from ssamba.demo.official import METHOD, fetch_official, skipped
    from ssamba.demo.report import write_report
    from ssamba.demo.tasks import TaskConfig, build_demo_tasks
    from ssamba.downstream.probe import ProbeConfig
    from ssamba.models import load as load_encoder

    if config is None:
        extra = {"seed": seed} | ({"minutes": minutes} if minutes is not None else {})
        config = DemoConfig.quick_preset(**extra) if quick else DemoConfig(**extra)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache).expanduser() if cache is not None else DEFAULT_CACHE
    torch.set_num_threads(config.threads)
    stages = _Stages(say)

    corpus_data = stages.run("corpus", lambda: _load_corpus(corpus, cache_dir, say))
    too_short = [f for f in corpus_data.files if f.duration < MIN_CLIP_SECONDS]
    if too_short:  # load_audio refuses clips shorter than one fbank frame; the packages have a few clicks
        say(f"[demo]   {len(too_short)} clips shorter than {MIN_CLIP_SECONDS * 1000:g} ms left out")
        corpus_data.files = [f for f in corpus_data.files if f.duration >= MIN_CLIP_SECONDS]
    tasks = build_demo_tasks(corpus_data.files, TaskConfig(seed=config.seed, max_per_class=config.max_per_class))
    paths = _pretraining_paths(corpus_data, tasks, config)
    probe_paths = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items})
    store = stages.run("features", lambda: compute_fbanks(sorted(set(paths) | set(probe_paths)), cache_dir,
                                                          max_seconds=config.max_clip_seconds, workers=config.threads))
    torch.set_num_threads(config.threads)
    pretraining_fbanks = store.take(paths)

    runs = {}
    for model in ENCODERS:
        runs[model] = stages.run(f"pretrain {model}", lambda m=model: pretrain(
            m, pretraining_fbanks, store.pad_value, config, out / m))

    official = stages.run("official weights", lambda: fetch_official(say=say)) if config.official else \
        skipped("not tried (DemoConfig.official is off" + (", as in quick mode)" if config.quick else ")"))
    if official.used:   # the demo's windows, not its own 1024: the same protocol, ~5x less work per clip
        official.window_frames = config.crop_frames
    say(f"[demo]   {official.sentence()}")
    probe_fbanks = store.take(probe_paths)
    features: dict[str, np.ndarray] = {}
    features["log-mel stats"] = stages.run("embed log-mel", lambda: logmel_statistics(probe_fbanks))
    encoders = {
        "SSAMBA random init": lambda: random_init_encoder(runs["ssamba"]["run_config"]),
        "SSAMBA pretrained": lambda: load_encoder(runs["ssamba"]["encoder_dir"]),
        "SSAST pretrained": lambda: load_encoder(runs["ssast"]["encoder_dir"]),
    }
    if official.used:
        encoders[METHOD] = lambda: load_encoder(official.path, input_tdim=config.crop_frames)
    depth_features: dict[str, np.ndarray] = {}
    for name, make in encoders.items():
        pooled = stages.run(f"embed {name}", lambda make=make: encoder_embeddings(make(), probe_fbanks))
        features[name] = pooled["mean"]
        features[f"{name}, mean‖std"] = pooled["mean_std"]
        features[f"{name}, bands"] = pooled["bands"]
        if name.startswith("SSAMBA"):  # accuracy against depth; the last layer is the headline row already
            for k in range(pooled["layer_means"].shape[1] - 1):
                depth_features[f"{name}{LAYER_TAG}{k}"] = pooled["layer_means"][:, k]

    row_of = {p: i for i, p in enumerate(probe_paths)}
    probe_config = ProbeConfig(weight_decay=config.probe_weight_decay, max_iter=config.probe_max_iter)
    torch.set_num_threads(1)  # L-BFGS on small matrices: a second thread only adds waiting on a busy machine
    results = stages.run("probes", lambda: probe_tasks(tasks, features, row_of, probe_config, config.seed))
    depth_results = stages.run("probes per layer", lambda: probe_tasks(tasks, depth_features, row_of, probe_config,
                                                                       config.seed))
    torch.set_num_threads(config.threads)
    finetuned, finetune_runs = [], []
    if config.finetune_seconds > 0:
        from ssamba.demo.finetune import finetune_tasks

        fbank_of = dict(zip(probe_paths, probe_fbanks)).__getitem__
        finetuned, finetune_runs = stages.run("fine-tuning", lambda: finetune_tasks(
            tasks, encoders, fbank_of, store.pad_value, config.finetune_recipe(), out / "finetune", config.seed, say))
    results = results + finetuned
    embeddings_for_plot = {m: features[m] for m in ("log-mel stats", "SSAMBA pretrained")}
    corpus_info = {"root": str(corpus_data.root), "files": len(corpus_data.files),
                   "hours": round(corpus_data.total_duration / 3600, 3), "by_source": corpus_data.by_source(),
                   "packages": [asdict(p) for p in corpus_data.packages],
                   "pretraining_clips": len(paths), "pretraining_frames": store.total_frames,
                   "probe_clips": len(probe_paths), "left_out_too_short": len(too_short)}
    environment = {"python": platform.python_version(), "torch": torch.__version__, "threads": config.threads,
                   "machine": platform.machine(), "cpus": os.cpu_count()}
    images = stages.run("figures", lambda: make_figures(out, runs, results, tasks, embeddings_for_plot, row_of,
                                                        depth_results))
    stages.seconds["total"] = stages.total()
    report = write_report(out, config=config, corpus=corpus_info, tasks=tasks, runs=runs, results=results,
                          timings=stages.seconds, environment=environment, images=images,
                          depth_results=depth_results, finetune_runs=finetune_runs, official=official)
    atomic_write_text(out / "results.json", json.dumps({"config": asdict(config), "results": [r.row() for r in results],
                                                  "per_layer": [r.row() for r in depth_results],
                                                  "finetune_runs": finetune_runs, "official": official.row(),
                                                  "timings_s": stages.seconds, "corpus": corpus_info}, indent=1))
    say(f"[demo] done in {stages.seconds['total'] / 60:.1f} min; report: {report['md']} and {report['html']}")
    return DemoResult(out, report["md"], report["html"], [r.row() for r in results], dict(stages.seconds),
                      {m: {k: v for k, v in r.items() if k != "metrics"} | {"final": r["metrics"]} for m, r in runs.items()},
                      images)
