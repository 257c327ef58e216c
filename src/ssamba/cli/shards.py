"""`ssamba shards`: pack an audio folder into WebDataset tar shards (calls ssamba.data.shards.write_shards)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("shards", help="write WebDataset tar shards from an audio folder or manifest")
    p.add_argument("source", help="audio folder or manifest")
    p.add_argument("out_dir", help="folder for shard-000000.tar, ...")
    p.add_argument("--max-per-shard", type=int, default=1000, help="clips per shard (default 1000)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.data.shards import write_shards

    shards = write_shards(args.source, args.out_dir, max_per_shard=args.max_per_shard)
    print(f"wrote {len(shards)} shards to {args.out_dir}")
    return 0
