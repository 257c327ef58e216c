"""Padding costs no scan work: SSAMBA forward of a batch of clips of mixed lengths vs the same batch at full length.

Usage: python scripts/lengths_speed.py [--model ssamba_tiny] [--frames 1024] [--batch 16] [--repeats 5]
Prints the median forward time (wall clock, and CPU time of the process) of the batch at full
length (no lengths) and with lengths spread evenly from 10 % to 100 % of the longest, and their
ratio (issue 25 asks for <= 0.7). On a machine shared with other jobs the wall clock of short
multi-threaded kernels suffers from scheduling; --threads 1 measures the work itself.
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

    def once(lens) -> tuple[float, float]:
        with torch.inference_mode():
            start, cpu = time.perf_counter(), time.process_time()
            model(fbank, lengths=lens)
            return time.perf_counter() - start, time.process_time() - cpu

    for lens in variants.values():   # warm-up: numba compiles
        once(lens)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, lens in variants.items():
            times[name].append(once(lens))
    wall = {name: statistics.median(t[0] for t in v) for name, v in times.items()}
    cpu = {name: statistics.median(t[1] for t in v) for name, v in times.items()}
    print(f"{args.model}, batch {args.batch} x {args.frames} frames, {args.threads} threads, "
          f"lengths {lengths.min().item()}..{lengths.max().item()} frames")
    for name in variants:
        print(f"  {name:14s} median {wall[name] * 1e3:8.1f} ms wall, {cpu[name] * 1e3:8.1f} ms CPU")
    print(f"  ratio mixed / full: {wall['mixed lengths'] / wall['full length']:.2f} wall, "
          f"{cpu['mixed lengths'] / cpu['full length']:.2f} CPU")


if __name__ == "__main__":
    main()
