"""Score a saved encoder on the demo's test splits as the demo does: probes with every pooling,
and (unless --no-finetune) the demo's fine-tuning recipe.

    PYTHONPATH=src python scripts/demo_reprobe.py --encoder demo_out/ssamba/encoder --out scores.json

Why: a demo run fixes its pooling and head when it runs; an encoder from an earlier (or a
longer) run can be scored again with today's choices without pretraining it again. The tasks,
splits, probe and recipe are the demo's defaults (``DemoConfig``); the encoder should have been
pretrained with the demo's clean protocol (its test clips left out), as ``ssamba demo`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as ssamba sets it, before torch loads OpenMP

import torch  # noqa: E402
from demo_sweep import probe_poolings  # noqa: E402  (this folder: the sweep's probe of every pooling)

from ssamba.demo.features import compute_fbanks  # noqa: E402
from ssamba.demo.finetune import finetune_tasks  # noqa: E402
from ssamba.demo.pipeline import DEFAULT_CACHE, MIN_CLIP_SECONDS, DemoConfig, _load_corpus  # noqa: E402
from ssamba.demo.tasks import TaskConfig, build_demo_tasks  # noqa: E402
from ssamba.downstream.probe import ProbeConfig  # noqa: E402
from ssamba.models import load as load_encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, required=True, help="a saved encoder directory")
    parser.add_argument("--out", type=Path, required=True, help="where the rows go (JSON)")
    parser.add_argument("--name", default="encoder", help="method name in the rows")
    parser.add_argument("--no-finetune", action="store_true", help="probes only")
    args = parser.parse_args()
    config = DemoConfig()
    corpus = _load_corpus(None, DEFAULT_CACHE, print)
    corpus.files = [f for f in corpus.files if f.duration >= MIN_CLIP_SECONDS]
    tasks = build_demo_tasks(corpus.files, TaskConfig(seed=config.seed, max_per_class=config.max_per_class))
    paths = sorted({i.path.resolve() for t in tasks for i in t.train_items + t.test_items})
    store = compute_fbanks(paths, DEFAULT_CACHE, workers=config.threads)
    fbank_of = dict(zip(store.paths, store.fbanks)).__getitem__
    encoder = load_encoder(args.encoder)
    probe = ProbeConfig(weight_decay=config.probe_weight_decay, max_iter=config.probe_max_iter)
    rows = probe_poolings({args.name: encoder}, tasks, fbank_of, config.threads, probe, config.seed)
    runs = []
    if not args.no_finetune:
        torch.set_num_threads(config.threads)
        results, runs = finetune_tasks(tasks, {args.name: lambda: encoder}, fbank_of, store.pad_value,
                                       config.finetune_recipe(), args.out.parent / f"{args.out.stem}_finetune",
                                       config.seed, say=lambda line: print(line, file=sys.stderr, flush=True))
        rows += [r.row() for r in results]
    args.out.write_text(json.dumps({"encoder": str(args.encoder), "rows": rows, "finetune_runs": runs}, indent=1))
    for r in rows:
        print(f"{r['task']:16s} {r['method']:32s} {100 * r['accuracy']:5.1f} "
              f"({100 * r['ci_low']:.0f}–{100 * r['ci_high']:.0f})")


if __name__ == "__main__":
    main()
