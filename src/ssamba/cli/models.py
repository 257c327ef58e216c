"""`ssamba models`: the official checkpoints' short names, what the Hub repo holds and what is cached."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the official pretrained checkpoints (short names for --model)",
                       description="Short names `official:NAME` accepted wherever a model is named "
                                   "(ssamba.load, --model, --init, convert), with their Hub files; whether each "
                                   "is in the local Hugging Face cache; and, with network, what the repo holds.")
    p.add_argument("--offline", action="store_true", help="do not ask the Hub (as with HF_HUB_OFFLINE=1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.checkpoints import hub
    from ssamba.errors import CheckpointError

    cached = hub.cached_official()
    print(f"official checkpoints (hf://{hub.OFFICIAL_REPO}; size x masked patches of 512, "
          "pretrained on AudioSet-2M + LibriSpeech):")
    for name, filename in hub.OFFICIAL_CHECKPOINTS.items():
        where = f"cached {cached[name]}" if cached[name] else "not downloaded"
        print(f"  {hub.OFFICIAL_SCHEME}{name:<18} {filename:<22} {where}")
    if args.offline:
        print("Hub repo not listed: --offline")
        return 0
    try:
        files = hub.list_repo_files(hub.OFFICIAL_REPO)
    except CheckpointError as exc:
        print(f"Hub repo not listed: {exc}")
        return 0
    known = set(hub.OFFICIAL_CHECKPOINTS.values())
    missing = sorted(known - set(files))
    others = [f for f in files if f.endswith(hub.FILE_SUFFIXES) and f not in known]
    print(f"hf://{hub.OFFICIAL_REPO} holds {len(files)} files"
          + (f"; not there: {', '.join(missing)}" if missing else "; all nine checkpoints are there")
          + (f"; other checkpoints: {', '.join(others)} (load as hf://{hub.OFFICIAL_REPO}/FILE)" if others else ""))
    return 0
