"""The ``ssamba`` command: thin argument parsing over library functions.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` which registers it and sets ``func`` (args -> exit code).
User errors (``SsambaError``) are printed as one line, with a non-zero exit and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ssamba.errors import SsambaError

# name -> module under ssamba.cli (imported lazily so `ssamba --help` stays fast)
COMMANDS = {
    "embed": "embed",
    "convert": "convert",
    "pretrain": "pretrain",
    "finetune": "finetune",
    "probe": "probe",
    "evaluate": "evaluate",
    "shards": "shards",
    "bench": "bench",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssamba", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"ssamba.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ssamba.cli.{module}":
                raise
            continue  # command not built yet
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except SsambaError as exc:
        print(f"ssamba {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssamba {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
