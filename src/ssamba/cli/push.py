"""`ssamba push RUN_OR_CHECKPOINT OWNER/REPO`: publish an encoder on the Hugging Face Hub."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("push", help="upload a checkpoint or training run to a Hugging Face Hub repo",
                       description="Uploads config.json, model.safetensors (+ extra_state, a fine-tuned head) and a "
                                   "model card (README.md with the run's data, steps, losses and results) to OWNER/REPO, "
                                   "created if needed; `ssamba.load('hf://OWNER/REPO')` loads it back. Log in first "
                                   "(`hf auth login`) or set HF_TOKEN.")
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                   help="training/fine-tuning run folder, checkpoint folder, official .pth or Hub address")
    p.add_argument("repo_id", metavar="OWNER/REPO", help="target Hub model repository")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=run)


def run(args) -> int:
    from ssamba.models.checkpoint import push_to_hub

    url = push_to_hub(args.source, args.repo_id, private=args.private or None, commit_message=args.message)
    print(f"pushed {args.source} -> hf://{args.repo_id} ({url})")
    return 0
