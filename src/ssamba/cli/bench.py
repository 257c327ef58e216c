"""`ssamba bench`: SSAMBA vs SSAST time and memory against tokens (``ssamba.bench.efficiency``), or with
``--corpus DIR`` the throughput of embedding a folder, padded vs native windows (``ssamba.bench.corpus``)."""

from __future__ import annotations

from pathlib import Path

from ssamba.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time and peak memory of SSAMBA vs SSAST against sequence length")
    p.add_argument("--models", nargs="+", default=["ssamba_tiny", "ssast_tiny"])
    p.add_argument("--tokens", nargs="+", type=int, default=[512, 1024, 4096, 8192, 22000])
    p.add_argument("--frames", nargs="+", type=int, default=None,
                   help="fbank frames per clip instead of --tokens (the demo's pretraining shape: --batch 16 --frames 200)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--mode", choices=("inference", "train"), nargs="+", default=["inference"],
                   help="one or both; train = forward + backward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attention", nargs="+", choices=("naive", "sdpa"), default=["naive", "sdpa"])
    p.add_argument("--scan", nargs="+", choices=("auto", "ref", "chunked", "fused", "cuda"), default=["auto"])
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--engine", nargs="+", choices=("torch", "onnxruntime"), default=["torch"],
                   help="torch and/or onnxruntime (the encoder exported to a temp file per row)")
    p.add_argument("--quantize", nargs="+", choices=("none", "int8"), default=["none"],
                   help="onnxruntime rows: float32 (none) and/or dynamic int8 projection weights")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--depth", type=int, default=None, help="override the models' depth (quick checks)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    p.add_argument("--budget", type=float, default=120.0, help="max seconds of measured repeats per config")
    p.add_argument("--out", default=None, help="directory for <mode>_<device>.json/.md/.png")
    p.add_argument("--json", default=None, help="also write the (last mode's) result JSON here")
    p.add_argument("--plot", default=None, help="also write the (last mode's) plot here")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="instead: clips/s and audio-seconds/s embedding the audio files of DIR, padded to the window "
                        "vs native length + length buckets, for each of --models (registry names or checkpoints); "
                        "writes corpus.json/.md under --out")
    p.add_argument("--import-order", action="store_true",
                   help="also time SSAMBA-tiny (inference, batch 1, the first of --tokens) in two fresh interpreters, "
                        "one importing torch first and one ssamba first, alternating: one report row")
    p.add_argument("--batch-size", type=int, default=16, help="--corpus: windows per forward pass")
    p.add_argument("--limit", type=int, default=None, help="--corpus: that many clips, spread evenly over the folder")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ssamba.bench.efficiency import BenchConfig, run_benchmark
    from ssamba.bench.report import markdown_table, plot

    if args.corpus is not None:
        return _run_corpus(args)
    if args.repeats < 1 or args.batch < 1:
        raise ConfigError("--repeats and --batch must be at least 1")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")  # found before minutes of measuring
    for mode in args.mode:
        config = BenchConfig(models=args.models, tokens=args.tokens, frames=args.frames, batch=args.batch, mode=mode,
                             device=args.device, attention=args.attention,
                             scan=[None if s == "auto" else s for s in args.scan], dtype=args.dtype,
                             engines=args.engine, depth=args.depth, quantize=[None if q == "none" else q for q in args.quantize],
                             repeats=args.repeats, threads=args.threads, budget_s=args.budget)
        result = run_benchmark(config, args.out)
        if args.import_order and mode == "inference":
            from ssamba.bench.import_order import format_import_orders, measure_import_orders
            result["import_order"] = measure_import_orders(tokens=args.tokens[0], threads=args.threads)
            print(format_import_orders(result["import_order"]))
            if args.out:
                from ssamba.bench.report import save_results
                save_results(result, args.out)
        print()
        print(markdown_table(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        if args.plot:
            plot(result, args.plot)
    if args.out:
        print(f"results written to {args.out}")
    return 0


def _run_corpus(args) -> int:
    from ssamba.bench.corpus import CorpusBenchConfig, markdown_table, run_corpus_bench, save

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder")
    config = CorpusBenchConfig(corpus=args.corpus, models=args.models, batch_size=args.batch_size, limit=args.limit,
                               threads=args.threads, depth=args.depth, device=args.device)
    result = run_corpus_bench(config)
    print()
    print(markdown_table(result))
    if args.out:
        print(f"results written to {save(result, args.out)['md'].parent}")
    return 0
