"""`ssamba demo`: the main job (pretrain on real audio, probe, report). Calls `ssamba.demo.run_demo`."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="pretrain SSAMBA and SSAST on real audio, probe them, write a report",
                       description="Fetch (or reuse) the demo corpus, pretrain SSAMBA-tiny and SSAST-tiny for the "
                                   "same minutes, compare linear probes with random init and log-mel statistics, "
                                   "and write DIR/report.md and DIR/report.html.")
    p.add_argument("--out", default="demo_out", type=Path,
                   help="output folder (default: ./demo_out); one holding a previous demo is refused")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, a corpus subset, about 2 minutes")
    p.add_argument("--corpus", type=Path, default=None,
                   help="use this folder of audio instead of fetching the Debian corpus")
    p.add_argument("--cache", type=Path, default=None,
                   help="where the Debian corpus and feature cache live (default: ~/.cache/ssamba/demo)")
    p.add_argument("--minutes", type=float, default=None,
                   help="pretraining wall-clock minutes per model (default: 8, or 0.2 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and training (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.cli.outputs import refuse_previous_run
    from ssamba.demo import run_demo

    refuse_previous_run(args.out, ("report.md", "results.json", "ssamba", "ssast"))
    result = run_demo(args.out, corpus=args.corpus, quick=args.quick, minutes=args.minutes, seed=args.seed,
                      cache=args.cache)
    print(f"report: {result.report_md.resolve()}")
    print(f"        {result.report_html.resolve()}")
    return 0
