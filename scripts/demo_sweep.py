"""Measure demo recipes at equal wall clock, choosing inside the training split only.

    PYTHONPATH=src python scripts/demo_sweep.py --out /tmp/sweep [--minutes 8] [--only NAME ...]
    PYTHONPATH=src python scripts/demo_sweep.py --out /tmp/sweep --table   # markdown of what ran

Why a development split: the demo's test clips must not choose its recipe. Each demo task's
*training* items are split again by group (the same held-out-group rule, 30 % of groups) into
dev-train and dev-valid; every recipe here is scored on dev-valid, and neither the demo's test
clips nor the dev-valid clips are pretrained on.

Each pretraining setting (``DemoConfig`` overrides) pretrains SSAMBA for the same minutes, then
is scored by a linear probe (mean‖std pooling) and by fine-tuning (the demo's 40 s recipe) on
each task. Each fine-tuning setting (``FinetuneRecipe`` overrides) fine-tunes the baseline's
pretrained encoder and its random initialisation. Rows are appended to ``<out>/rows.jsonl``
as they finish, so a stopped sweep keeps what it measured; finished settings are skipped.
Not a test: one seed, numbers as noisy as their intervals say.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as ssamba sets it, before torch loads OpenMP

import torch  # noqa: E402

from ssamba.demo.embeddings import encoder_embeddings  # noqa: E402
from ssamba.demo.evaluate import probe_tasks  # noqa: E402
from ssamba.demo.features import compute_fbanks  # noqa: E402
from ssamba.demo.finetune import finetune_tasks  # noqa: E402
from ssamba.demo.pipeline import DEFAULT_CACHE, MIN_CLIP_SECONDS, DemoConfig, _load_corpus, pretrain, random_init_encoder  # noqa: E402
from ssamba.demo.tasks import DemoTask, TaskConfig, _split_groups, build_demo_tasks  # noqa: E402
from ssamba.downstream.probe import ProbeConfig  # noqa: E402
from ssamba.models import load as load_encoder  # noqa: E402

BASELINE = "baseline"
# name -> ("pretrain", DemoConfig overrides), ("finetune", FinetuneRecipe overrides) or ("poolings", {}):
# the baseline encoder and its random initialisation probed with every pooling
SETTINGS: dict[str, tuple[str, dict]] = {
    BASELINE: ("pretrain", {}),
    "finetune lr 3e-4, head x30": ("finetune", {"lr": 3e-4, "head_lr_mult": 30.0}),
    "finetune batch 8, lr 5e-4, head x10": ("finetune", {"batch_size": 8, "lr": 5e-4, "head_lr_mult": 10.0}),
    "crop 128 frames": ("pretrain", {"crop_frames": 128}),
    "mask ratio 0.75": ("pretrain", {"mask_ratio": 0.75}),
    "depth 4": ("pretrain", {"depth": 4}),
    "30 minutes": ("pretrain", {"minutes": 30.0}),   # what more CPU time buys
    "finetune LP-FT": ("finetune", {"head_init": "probe"}),
    "finetune LP-FT, lr 1e-4": ("finetune", {"head_init": "probe", "lr": 1e-4}),
    "finetune LP-FT, mean‖std head": ("finetune", {"head_init": "probe", "pooling": "mean_std"}),
    "finetune bands head": ("finetune", {"pooling": "bands"}),
    "finetune LP-FT, bands head": ("finetune", {"head_init": "probe", "pooling": "bands"}),
    "probe poolings": ("poolings", {}),
    # the demo's recipe again, beside the LP-FT rows: the VM's speed drifts between sessions
    "finetune demo recipe, rerun": ("finetune", {}),
}


def dev_split(task: DemoTask) -> DemoTask:
    """The task's training items split by group into dev-train (as train) and dev-valid (as test)."""
    labelled = [(i.path, i.label, i.group) for i in task.train_items]
    rules = TaskConfig(test_fraction=0.3, min_train=3, min_test=1)
    train, valid, _ = _split_groups(labelled, random.Random(f"dev:{task.name}"), rules)
    classes = sorted({i.label for i in train})
    return DemoTask(task.name, task.description, classes, train, [i for i in valid if i.label in classes],
                    task.group_kind)


def probe_poolings(encoders: dict[str, torch.nn.Module], tasks, fbank_of, threads: int, probe: ProbeConfig,
                   seed: int) -> list[dict]:
    """Dev-valid probe accuracy of each encoder with the official mean, mean‖std and bands poolings."""
    paths = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items})
    row_of = {p: k for k, p in enumerate(paths)}
    features = {}
    for name, encoder in encoders.items():
        torch.set_num_threads(threads)
        pooled = encoder_embeddings(encoder, [fbank_of(p) for p in paths])
        features |= {f"{name}, {pooling}": pooled[pooling] for pooling in ("mean", "mean_std", "bands")}
    torch.set_num_threads(1)
    return [r.row() | {"kind": "probe"} for r in probe_tasks(tasks, features, row_of, probe, seed)]


def score(encoder: torch.nn.Module, name: str, tasks, fbank_of, pad_value: float, recipe, out: Path,
          seed: int, probe: ProbeConfig | None) -> list[dict]:
    """Dev-valid accuracy of `encoder`: linear probe on mean‖std (unless `probe` is None) and fine-tuning."""
    rows = []
    if probe is not None:
        paths = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items})
        row_of = {p: k for k, p in enumerate(paths)}
        torch.set_num_threads(recipe.threads)
        pooled = encoder_embeddings(encoder, [fbank_of(p) for p in paths])
        torch.set_num_threads(1)
        rows += [r.row() | {"kind": "probe"} for r in probe_tasks(tasks, {name: pooled["mean_std"]}, row_of, probe,
                                                                   seed)]
    torch.set_num_threads(recipe.threads)
    results, runs = finetune_tasks(tasks, {name: lambda: encoder}, fbank_of, pad_value, recipe, out, seed,
                                   say=lambda line: print(line, file=sys.stderr, flush=True))
    steps = {r["task"]: r["steps"] for r in runs}
    rows += [r.row() | {"kind": "fine-tune", "steps": steps[r.task]} for r in results]
    return rows


def read_records(out: Path) -> dict[str, dict]:
    """Finished settings of the sweep in `out`, by name (rows.jsonl holds one record per line)."""
    path = out / "rows.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {record["setting"]: record for record in map(json.loads, lines)}


def run(out: Path, minutes: float, finetune_seconds: float, only: list[str] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    done = read_records(out)
    base = DemoConfig(minutes=minutes, finetune_seconds=finetune_seconds)
    corpus = _load_corpus(None, DEFAULT_CACHE, print)
    corpus.files = [f for f in corpus.files if f.duration >= MIN_CLIP_SECONDS]
    probe = ProbeConfig(weight_decay=base.probe_weight_decay, max_iter=base.probe_max_iter)
    demo_tasks = build_demo_tasks(corpus.files, TaskConfig(seed=base.seed, max_per_class=base.max_per_class))
    tasks = [dev_split(t) for t in demo_tasks]
    held_out = {i.path.resolve() for t in demo_tasks for i in t.test_items}
    held_out |= {i.path.resolve() for t in tasks for i in t.test_items}
    pretraining = [f.path.resolve() for f in corpus.files if f.path.resolve() not in held_out]
    probe_paths = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items})
    store = compute_fbanks(sorted(set(pretraining) | set(probe_paths)), DEFAULT_CACHE, workers=base.threads)
    fbank_of = dict(zip(store.paths, store.fbanks)).__getitem__
    for name, (kind, overrides) in SETTINGS.items():
        if name in done or (only and name not in only):
            continue
        t0 = time.perf_counter()
        rows: list[dict] = []
        if kind == "pretrain":
            config = replace(base, **overrides)
            torch.set_num_threads(config.threads)
            summary = pretrain("ssamba", store.take(pretraining), store.pad_value, config, out / name / "ssamba")
            encoder = load_encoder(summary["encoder_dir"])
            rows += score(encoder, "pretrained", tasks, fbank_of, store.pad_value, config.finetune_recipe(),
                          out / name / "finetune", config.seed, probe)
            if name == BASELINE:
                random_init = random_init_encoder(summary["run_config"])
                rows += score(random_init, "random init", tasks, fbank_of, store.pad_value,
                              config.finetune_recipe(), out / name / "finetune", config.seed, probe)
            facts = {"steps": summary["steps"], "final": {k: summary["metrics"].get(k) for k in ("acc", "mse", "nce")},
                     "run_config": summary["run_config"]}
        elif kind == "poolings":
            encoders = {"pretrained": load_encoder(out / BASELINE / "ssamba" / "encoder"),
                        "random init": random_init_encoder(done[BASELINE]["run_config"])}
            rows += probe_poolings(encoders, tasks, fbank_of, base.threads, probe, base.seed)
            facts = {}
        else:
            baseline = done[BASELINE]
            recipe = replace(base.finetune_recipe(), **overrides)
            random_init = random_init_encoder(baseline["run_config"])
            pretrained = load_encoder(out / BASELINE / "ssamba" / "encoder")
            for label, encoder in (("pretrained", pretrained), ("random init", random_init)):
                rows += score(encoder, label, tasks, fbank_of, store.pad_value, recipe, out / name / "finetune",
                              base.seed, probe=None)
            facts = {}
        record = {"setting": name, "kind": kind, "overrides": overrides, "minutes": overrides.get("minutes", minutes),
                  "seconds": round(time.perf_counter() - t0, 1), **facts, "rows": rows}
        with open(out / "rows.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        done[name] = record
        print(f"[sweep] {name}: {record['seconds'] / 60:.1f} min", file=sys.stderr, flush=True)


def table(out: Path) -> str:
    """Markdown: one line per (setting, encoder, kind), accuracy % (95 % interval) per task."""
    records = list(read_records(out).values())
    task_names = list(dict.fromkeys(r["task"] for rec in records for r in rec["rows"]))
    lines = ["| setting | encoder | scored by | " + " | ".join(task_names) + " | mean |",
             "|---" * (len(task_names) + 4) + "|"]
    for rec in records:
        keys = dict.fromkeys((r["method"], r["kind"]) for r in rec["rows"])
        for method, kind in keys:
            cells = {r["task"]: r for r in rec["rows"] if r["method"] == method and r["kind"] == kind}
            text = [f"{100 * cells[t]['accuracy']:.1f} ({100 * cells[t]['ci_low']:.0f}–{100 * cells[t]['ci_high']:.0f})"
                    for t in task_names]
            mean = sum(cells[t]["accuracy"] for t in task_names) / len(task_names)
            lines.append(f"| {rec['setting']} | {method} | {kind} | " + " | ".join(text) + f" | {100 * mean:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=8.0, help="pretraining minutes per setting")
    parser.add_argument("--finetune-seconds", type=float, default=DemoConfig.finetune_seconds,
                        help="wall clock of each fine-tuning run")
    parser.add_argument("--only", nargs="*", help="run only these settings")
    parser.add_argument("--table", action="store_true", help="print the markdown table of what ran")
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
    else:
        run(args.out, args.minutes, args.finetune_seconds, args.only)


if __name__ == "__main__":
    main()
