"""`ssamba embed`: embeddings of audio files with a checkpoint (see ``ssamba.inference.embed_files``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ssamba.checkpoints.format import atomic_write_all
from ssamba.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="embed audio files with a pretrained encoder",
                       description="One scene embedding per file (OUT.npy + OUT.files.txt), or with "
                                   "--timestamps an OUT.npz holding names, per-file embeddings and times.")
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="audio files and/or directories (recursive), "
                                                                     "or one hf-dataset:PATH_OR_ID (every row)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="ssamba checkpoint dir, official .pth, hf://OWNER/REPO[@REV][/FILE.pth] "
                                      "or official:NAME (see `ssamba models`)")
    src.add_argument("--onnx", help="an encoder exported by `ssamba export`, run by onnxruntime")
    p.add_argument("--out", required=True, help="output .npy (scene) or .npz (--timestamps)")
    p.add_argument("--timestamps", action="store_true", help="timestamp embeddings instead of scene embeddings")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--native", action="store_true",
                   help="run clips shorter than the encoder's window at their own length (batched by length, "
                        "exact per clip) instead of padding them to the window as the official recipes do: "
                        "much faster on short clips; keep the default for checkpoints fine-tuned on padded windows")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--layers", default=None, metavar="K|K,K|all",
                   help="pool the tokens of layer K (0 = first, -1 = last; an SSAMBA layer is a flipped pair), "
                        "the mean of several, or of all (default: the final tokens, the official embedding)")
    p.add_argument("--pooling", choices=("mean", "mean_std", "bands"), default="mean",
                   help="scene embedding from the tokens: mean (official), mean_std (mean and std concatenated) or "
                        "bands (per frequency band the mean over time, concatenated: keeps the spectral envelope)")
    p.add_argument("--skip-errors", action="store_true", help="skip unreadable files (listed in OUT.skipped.txt)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ssamba.inference import embed_files, find_audio_files

    out = Path(args.out)
    expected = ".npz" if args.timestamps else ".npy"
    if out.suffix != expected:
        raise ConfigError(f"--out {out}: must end in {expected}" + (" with --timestamps" if args.timestamps else ""))
    if len(args.inputs) == 1 and args.inputs[0].startswith("hf-dataset:"):   # every row of a datasets dataset
        from ssamba.integrations.hf_streams import embed_hf_dataset

        if args.onnx or args.native:
            raise ConfigError(f"{args.inputs[0]}: a datasets source is embedded with --model (padded windows)")
        result = embed_hf_dataset(args.inputs[0], args.model, timestamps=args.timestamps, batch_size=args.batch_size,
                                  device=args.device, dtype=getattr(torch, args.dtype), skip_errors=args.skip_errors,
                                  layers=args.layers, pooling=args.pooling)
    else:
        files = find_audio_files(args.inputs)
        if not files:
            raise ConfigError(f"no audio files found in {' '.join(args.inputs)}")
        result = embed_files(files, args.onnx or args.model, timestamps=args.timestamps, batch_size=args.batch_size,
                             device=args.device, dtype=getattr(torch, args.dtype), skip_errors=args.skip_errors,
                             layers=args.layers, pooling=args.pooling, window="native" if args.native else "padded")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [str(f) for f in result.files]
    skipped_path = out.with_suffix(".skipped.txt")
    if args.timestamps:
        arrays = {"names": np.array(names)}
        for i, (emb, times) in enumerate(result.embeddings):
            arrays[f"embeddings_{i}"], arrays[f"timestamps_ms_{i}"] = emb, times
        writes = {out: _binary(lambda f: np.savez(f, **arrays))}
    else:
        writes = {out: _binary(lambda f: np.save(f, result.embeddings)),
                  out.with_suffix(".files.txt"): _text("".join(n + "\n" for n in names))}
    if result.skipped:
        writes[skipped_path] = _text("".join(f"{p}\t{why}\n" for p, why in result.skipped))
    atomic_write_all(writes)   # the outputs of one run are replaced together, or not at all
    if not result.skipped and skipped_path.exists():
        skipped_path.unlink()   # a previous run's list of skips does not describe this output
    shape = (len(names), "T", result.embeddings[0][0].shape[-1]) if args.timestamps and names else \
        getattr(result.embeddings, "shape", None)
    print(f"embedded {len(names)} file(s) -> {out} {shape}")
    for i, name in enumerate(names):
        print(f"{i}\t{name}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s), listed in {skipped_path}:", file=sys.stderr)
        for path, why in result.skipped:
            print(f"  {why}", file=sys.stderr)
    return 0


def _binary(save):
    """A writer for atomic_write_all: ``save(file)`` into the temp file."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            save(f)
    return write


def _text(text: str):
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")
