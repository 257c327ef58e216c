"""The ``ssamba`` command: thin argument parsing over library functions.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` which registers it and sets ``func`` (args -> exit code).
User errors (``SsambaError``) and OS errors (a full disk, a read-only folder) are printed as one
line naming the file, with exit status 2 and no traceback; every output is written atomically, so
such an error leaves the previous file in place.
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
    "export": "export",
    "models": "models",
    "push": "push",
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


def one_line(exc: BaseException) -> str:
    """The error's own message on one line. An error re-raised from a DataLoader worker carries
    the worker's traceback in its text; its last line is the original ``Type: message``."""
    if isinstance(exc, OSError) and exc.strerror:  # e.g. a full disk: "PATH: No space left on device"
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(exc).__name__
    last = lines[-1]
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (SsambaError, OSError) as exc:  # user input or the machine (disk full, permissions): no traceback
        print(f"ssamba {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssamba {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
