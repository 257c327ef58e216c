"""`ssamba finetune`: fine-tune an encoder on a dataset with a recipe config
(see ``ssamba.downstream.finetune.finetune``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune an encoder on a labelled dataset",
                       description="Train encoder + head with a recipe YAML (configs/finetune/*.yaml); writes "
                                   "results.json, results.md, confusion.png and the fine-tuned model(s) into --out.")
    p.add_argument("--config", required=True, help="recipe YAML with finetune: and train: sections")
    p.add_argument("--data", required=True, help="dataset root in its official layout (or a CSV manifest, or "
                                                 "hf-dataset:PATH_OR_ID[?audio=COL&label=COL&...] for a datasets dataset)")
    p.add_argument("--skip-errors", action="store_true", help="leave out undecodable rows of an hf-dataset: source")
    p.add_argument("--init", default=None,
                   help="pretrained checkpoint dir, official .pth, hf:// address or official:NAME (default: random init)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--dataset", default=None, help="reader name overriding the config's finetune.dataset ('auto' detects)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.lr=5e-5 (the same syntax as `ssamba pretrain`)")
    p.add_argument("--set", dest="set_overrides", action="append", default=[], help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.cli.outputs import refuse_previous_run
    from ssamba.downstream.finetune import finetune, load_finetune_config
    from ssamba.integrations.hf_datasets import manifest_for

    refuse_previous_run(args.out, ("results.json", "checkpoints", "model", "fold*"))
    config, train_config = load_finetune_config(args.config, args.overrides + args.set_overrides)
    if args.dataset:
        config.dataset = args.dataset
    manifest = manifest_for(args.data, skip_errors=args.skip_errors)
    results = finetune(config, train_config, args.data, args.out, init=args.init, manifest=manifest)
    print((Path(args.out) / "results.md").read_text())
    return 0 if results["runs"] else 1
