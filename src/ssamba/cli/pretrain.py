"""`ssamba pretrain`: self-supervised masked-patch pretraining (calls ssamba.pretrain.run_pretraining)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining (InfoNCE + MSE on masked patches)",
                       description="Pretrain an SSAMBA/SSAST encoder on unlabeled audio. Extra arguments "
                                   "key=value override the config, e.g. train.lr=5e-4 train.max_steps=100.")
    p.add_argument("--config", help="YAML recipe path or bundled recipe name, e.g. ssamba_tiny_cpu "
                                    "(optional with --resume: the run's saved config is used)")
    p.add_argument("--data", help="audio folder, manifest (.txt/.csv/.json), folder of WebDataset shards, or "
                                  "hf-dataset:PATH_OR_ID[?audio=COL&train=SPLIT] (a datasets dataset, streamed)")
    p.add_argument("--out", required=True, help="run directory (metrics.csv, checkpoints/); one holding a run needs --resume")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.cli.outputs import refuse_previous_run
    from ssamba.integrations.hf_streams import register_pretraining_source
    from ssamba.pretrain import run_pretraining

    register_pretraining_source()   # --data hf-dataset:... (also on --resume of such a run)

    if not args.resume:
        refuse_previous_run(args.out, ("checkpoints",), "continue it with --resume or choose another --out")
    summary = run_pretraining(args.config, args.data, args.out, resume=args.resume, overrides=args.overrides)
    metrics = summary["metrics"]
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k in ("loss", "nce", "mse", "acc"))
    print(f"pretrained {summary['steps']} steps -> {summary['run_dir']} ({shown})")
    return 0
