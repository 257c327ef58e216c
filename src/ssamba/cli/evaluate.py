"""`ssamba evaluate`: score the model(s) of a fine-tuning run on a dataset
(see ``ssamba.downstream.finetune.evaluate``)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a fine-tuned run on a dataset",
                       description="Scores RUN_DIR/model (or each RUN_DIR/fold*/model on its held-out fold) and writes "
                                   "results.json, results.md, confusion.png into --out (default RUN_DIR/evaluation).")
    p.add_argument("--model", required=True, help="run directory written by `ssamba finetune`")
    p.add_argument("--data", required=True, help="dataset root (same layout as for fine-tuning), or hf-dataset:...")
    p.add_argument("--skip-errors", action="store_true", help="leave out undecodable rows of an hf-dataset: source")
    p.add_argument("--out", default=None, help="output directory (default MODEL/evaluation)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.cli.outputs import refuse_previous_run
    from ssamba.downstream.finetune import evaluate
    from ssamba.integrations.hf_datasets import manifest_for

    out = Path(args.out) if args.out else Path(args.model) / "evaluation"
    refuse_previous_run(out, ("results.json",))
    evaluate(args.model, args.data, out, batch_size=args.batch_size,
             manifest=manifest_for(args.data, skip_errors=args.skip_errors))
    print((out / "results.md").read_text())
    return 0
