"""How fast could SSAMBA-tiny's inference be if its selective scan cost nothing?

    PYTHONPATH=src python scripts/scan_bound.py [--tokens 512] [--threads 2] [--repeats 12]

Times, interleaved in one process (min and median ms over the repeats, batch 1, float32):
SDPA SSAST-tiny, SSAMBA-tiny, and SSAMBA-tiny with the fused scan kernel replaced by a no-op
that writes zeros (everything else — projections, conv, norms, hand-offs between torch and
numba — runs as usual). The gap between the last row and SSAST is what the scan may cost at
most for SSAMBA to match a ratio target; the README's efficiency section reads it that way.
Not a test; the numbers are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import torch

import ssamba.nn.bimamba_fused as bimamba_fused
from ssamba.models.registry import create_model

REAL_SCAN = bimamba_fused._biscan_kernel


def no_scan(u, delta, xdbl, A, D, bias, z, out, *rest) -> None:
    """Stands in for ``_biscan_kernel``: the mixer's gated scan output is all zeros."""
    out[:] = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=512, help="patch tokens (512 = 1024 frames = 10.24 s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    frames = args.tokens * 16 // 8          # 8 frequency patches of 16 x 16 per 16 frames
    fbank = torch.randn(1, frames, 128)
    models = {name: create_model(name, input_tdim=frames).eval() for name in ("ssast_tiny", "ssamba_tiny")}
    variants = {"SDPA SSAST-tiny": ("ssast_tiny", REAL_SCAN), "SSAMBA-tiny": ("ssamba_tiny", REAL_SCAN),
                "SSAMBA-tiny, no-op scan": ("ssamba_tiny", no_scan)}

    def once(model_name: str, scan) -> float:
        bimamba_fused._biscan_kernel = scan
        with torch.no_grad():
            start = time.perf_counter()
            models[model_name](fbank)
            return time.perf_counter() - start

    for variant in variants.values():       # warm-up: numba compiles, allocators grow
        once(*variant)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, variant in variants.items():
            times[name].append(once(*variant))
    bimamba_fused._biscan_kernel = REAL_SCAN
    print(f"{args.tokens} tokens, batch 1, {args.threads} threads, {args.repeats} interleaved repeats")
    for name, values in times.items():
        print(f"  {name:26s} min {min(values) * 1e3:7.1f} ms   median {statistics.median(values) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
