"""Padding costs no scan work: SSAMBA forward of a batch of clips of mixed lengths vs the same batch at full length.

Usage: python scripts/lengths_speed.py [--model ssamba_tiny] [--frames 1024] [--batch 16] [--repeats 5]
Prints the median forward time of the batch at full length (no lengths) and with lengths spread
evenly from 10 % to 100 % of the longest, and their ratio (issue 25 asks for <= 0.7).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import torch

from ssamba.models.registry import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ssamba_tiny")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    model = create_model(args.model, input_tdim=args.frames).eval()
    fbank = torch.randn(args.batch, args.frames, model.config.input_fdim)
    spread = torch.linspace(0.1, 1.0, args.batch)
    lengths = (spread * args.frames).long().clamp(min=model.config.tshape)
    variants = {"full length": None, "mixed lengths": lengths}

    def once(lens) -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            model(fbank, lengths=lens)
            return time.perf_counter() - start

    for lens in variants.values():   # warm-up: numba compiles
        once(lens)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, lens in variants.items():
            times[name].append(once(lens))
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(f"{args.model}, batch {args.batch} x {args.frames} frames, {args.threads} threads, "
          f"lengths {lengths.min().item()}..{lengths.max().item()} frames")
    for name, value in medians.items():
        print(f"  {name:14s} median {value * 1e3:8.1f} ms")
    print(f"  ratio mixed / full: {medians['mixed lengths'] / medians['full length']:.2f}")


if __name__ == "__main__":
    main()
