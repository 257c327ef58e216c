"""SSAMBA-tiny against SDPA SSAST-tiny, timed interleaved in one process (min and median ms).

    PYTHONPATH=src python scripts/interleaved_speed.py [--repeats 10] [--threads 2] [--only NAME ...]

The shapes of the efficiency targets: 512 tokens at batch 1 (inference, forward + backward),
512 tokens at batch 16 (inference: clips/s), the demo's pretraining shape (6-layer encoders,
batch 16 x 200 frames, forward + backward). Each repeat runs every configuration once, in turn,
so a machine whose speed drifts (these VMs swing ~2x from hour to hour) affects both models
alike; the ratios of medians are what to compare. Also prints the scan kernel's core-ns per
state update (``ssamba.bench.measure.scan_profile``). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import torch

from ssamba.bench.measure import cpu_mhz, frames_for_tokens, scan_profile
from ssamba.models.registry import create_model

SHAPES = {   # name: (batch, frames, depth or None, train)
    "512 tokens, batch 1, inference": (1, frames_for_tokens(512), None, False),
    "512 tokens, batch 1, forward + backward": (1, frames_for_tokens(512), None, True),
    "512 tokens, batch 16, inference": (16, frames_for_tokens(512), None, False),
    "pretraining shape (6 layers, 16 x 200 frames), forward + backward": (16, 200, 6, True),
}


def _step(model, fbank, train: bool) -> None:
    if train:
        model.forward_features(fbank).pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode():
            model.forward_features(fbank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of the shape names to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    mhz = cpu_mhz()
    print(f"{args.threads} threads, {args.repeats} interleaved repeats, clock {mhz} MHz (/proc/cpuinfo)")
    for name, (batch, frames, depth, train) in SHAPES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        torch.manual_seed(0)
        extra = {"drop_path_rate": 0.0, **({"depth": depth} if depth else {})}
        models = {"SDPA SSAST-tiny": create_model("ssast_tiny", attention="sdpa", **extra),
                  "SSAMBA-tiny": create_model("ssamba_tiny", **extra)}
        for model in models.values():
            model.train(train)
        fbank = torch.randn(batch, frames, 128)
        for model in models.values():     # warm-up: compile, allocators, thread pools
            _step(model, fbank, train)
        times = {key: [] for key in models}
        for _ in range(args.repeats):
            for key, model in models.items():
                start = time.perf_counter()
                _step(model, fbank, train)
                times[key].append(time.perf_counter() - start)
        print(f"\n{name}")
        for key, values in times.items():
            clips = f"  ({batch / statistics.median(values):.1f} clips/s)" if batch > 1 else ""
            print(f"  {key:16s} min {min(values) * 1e3:8.1f} ms  median {statistics.median(values) * 1e3:8.1f} ms{clips}")
        ast, mamba = times["SDPA SSAST-tiny"], times["SSAMBA-tiny"]
        print(f"  SSAMBA / SSAST: min {min(mamba) / min(ast):.2f}x, median "
              f"{statistics.median(mamba) / statistics.median(ast):.2f}x")
        rates = [scan_profile(lambda: _step(models["SSAMBA-tiny"], fbank, train)) for _ in range(3)]
        forward = [r[0] for r in rates]
        line = f"  scan kernel: forward {min(forward):.3f} ns/update/core"
        if train:
            backward = [r[1] for r in rates]
            line += f", backward {min(backward):.3f} ({min(backward) / min(forward):.2f}x)"
        if mhz:
            line += f"; forward {min(forward) * mhz / 1e3:.2f} cycles at {mhz:.0f} MHz"
        print(line + f" (numba threading layer: {numba.threading_layer()})")


if __name__ == "__main__":
    main()
