"""`ssamba demo`: the main job (pretrain on real audio, probe, report)."""

from ssamba.errors import SsambaError


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="pretrain on real audio and report what it learned")
    p.set_defaults(func=run)


def run(args) -> int:
    raise SsambaError("the demo is not built yet (issue 8); nothing was run")
