"""Selective-scan micro-benchmark: time per backend, forward and forward+backward.

    python -m ssamba.bench.scan [--lengths 512 4096 22000] [--backends ref chunked fused]
                                [--width 384] [--state 16] [--batch 1] [--repeats 3]
                                [--threads 2] [--json OUT.json]

Not a test: it prints a table (median and min seconds of the repeats, after one warm-up) and the
speed-up of each backend over "ref". The sequential reference is only run up to
``--max-ref-length`` tokens; beyond that its time is extrapolated linearly from the longest
measured length (it is a loop over L with a fixed cost per step) and marked as such.
"chunked" forward+backward is skipped when its autograd intermediates would not fit
``--max-memory-gb``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from ssamba.bench.measure import cpu_model
from ssamba.nn.scan import available_backends, selective_scan


@dataclass
class ScanTiming:
    """One (backend, length) measurement; times in seconds, None when skipped."""
    backend: str
    length: int
    forward_median: float | None = None
    forward_min: float | None = None
    train_median: float | None = None     # forward + backward
    train_min: float | None = None
    note: str = ""
    extrapolated: bool = False


@dataclass
class ScanBenchConfig:
    lengths: list[int] = field(default_factory=lambda: [512, 4096, 22000])
    backends: list[str] = field(default_factory=lambda: ["ref", "chunked", "fused"])
    width: int = 384            # E: SSAMBA-tiny's inner width (2 x 192)
    state: int = 16             # N
    batch: int = 1
    repeats: int = 3
    threads: int = 2
    max_ref_length: int = 4096
    max_memory_gb: float = 4.0


def machine_description() -> str:
    """CPU model, cores and library versions, for the table header."""
    model = cpu_model()
    versions = f"torch {torch.__version__}"
    try:
        import numba
        versions += f", numba {numba.__version__}"
    except ImportError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs; {versions}"


def _inputs(cfg: ScanBenchConfig, length: int, requires_grad: bool, seed: int = 0):
    """SSAMBA-like inputs: softplus'd delta with bias, D, z gate, shared B/C."""
    g = torch.Generator().manual_seed(seed)
    b, E, N, L = cfg.batch, cfg.width, cfg.state, length
    tensors = dict(
        u=torch.randn(b, E, L, generator=g), delta=torch.randn(b, E, L, generator=g) * 0.5,
        A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(E, 1),
        B=torch.randn(b, N, L, generator=g), C=torch.randn(b, N, L, generator=g),
        D=torch.ones(E), z=torch.randn(b, E, L, generator=g), delta_bias=torch.randn(E, generator=g) * 0.1,
    )
    return {k: v.requires_grad_(requires_grad) for k, v in tensors.items()}


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()                                               # warm-up (and numba compile / cache load)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _chunked_train_bytes(cfg: ScanBenchConfig, length: int) -> float:
    """Rough autograd footprint of the chunked backend: ~8 float32 (batch, E, L, N) tensors."""
    return 8 * 4 * cfg.batch * cfg.width * length * cfg.state


def time_backend(cfg: ScanBenchConfig, backend: str, length: int) -> ScanTiming:
    """Measure one backend at one length (forward under no_grad, then forward + backward)."""
    result = ScanTiming(backend, length)
    x = _inputs(cfg, length, requires_grad=False)
    with torch.no_grad():
        result.forward_median, result.forward_min = _time(
            lambda: selective_scan(**x, delta_softplus=True, backend=backend), cfg.repeats)
    if backend == "chunked" and _chunked_train_bytes(cfg, length) > cfg.max_memory_gb * 2**30:
        result.note = (f"fwd+bwd skipped: ~{_chunked_train_bytes(cfg, length) / 2**30:.1f} GiB of "
                       f"autograd intermediates > --max-memory-gb {cfg.max_memory_gb}")
        return result
    xg = _inputs(cfg, length, requires_grad=True)
    weight = torch.randn(cfg.batch, cfg.width, length)

    def train_step():
        for t in xg.values():
            t.grad = None
        out = selective_scan(**xg, delta_softplus=True, backend=backend)
        (out * weight).sum().backward()
    result.train_median, result.train_min = _time(train_step, cfg.repeats)
    return result


def run_scan_benchmark(cfg: ScanBenchConfig) -> list[ScanTiming]:
    """All requested (backend, length) pairs; "ref" beyond ``max_ref_length`` is extrapolated."""
    torch.set_num_threads(cfg.threads)
    try:
        import numba
        numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    usable = available_backends("cpu")
    results: list[ScanTiming] = []
    for backend in cfg.backends:
        if backend not in usable:
            results.extend(ScanTiming(backend, L, note=f"{backend} unavailable on cpu here")
                           for L in cfg.lengths)
            continue
        measured: ScanTiming | None = None
        for L in sorted(cfg.lengths):
            if backend == "ref" and L > cfg.max_ref_length and measured is not None:
                scale = L / measured.length
                results.append(ScanTiming(
                    backend, L, measured.forward_median * scale, measured.forward_min * scale,
                    measured.train_median * scale, measured.train_min * scale,
                    note=f"extrapolated linearly from L={measured.length}", extrapolated=True))
                continue
            timing = time_backend(cfg, backend, L)
            results.append(timing)
            measured = timing
            print(f"  measured {backend:8s} L={L:6d}: fwd {timing.forward_median:.4f} s", flush=True)
    return results


def format_table(results: list[ScanTiming]) -> str:
    """Markdown table with speed-ups over "ref" at the same length."""
    ref = {r.length: r for r in results if r.backend == "ref" and r.forward_median}

    def secs(v):
        return "—" if v is None else f"{v:.4f}"

    def speedup(r, attr):
        base = ref.get(r.length)
        mine = getattr(r, attr)
        if base is None or mine is None or getattr(base, attr) is None or r.backend == "ref":
            return "—"
        return f"{getattr(base, attr) / mine:.0f}×"

    lines = ["| L | backend | forward s (median / min) | fwd+bwd s (median / min) | "
             "speed-up fwd | speed-up fwd+bwd | note |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r.length, r.backend)):
        star = "*" if r.extrapolated else ""
        lines.append(f"| {r.length} | {r.backend}{star} | {secs(r.forward_median)} / {secs(r.forward_min)} | "
                     f"{secs(r.train_median)} / {secs(r.train_min)} | {speedup(r, 'forward_median')} | "
                     f"{speedup(r, 'train_median')} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = ScanBenchConfig()
    p = argparse.ArgumentParser(prog="python -m ssamba.bench.scan", description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=defaults.lengths)
    p.add_argument("--backends", nargs="+", default=defaults.backends)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--state", type=int, default=defaults.state)
    p.add_argument("--batch", type=int, default=defaults.batch)
    p.add_argument("--repeats", type=int, default=defaults.repeats)
    p.add_argument("--threads", type=int, default=defaults.threads)
    p.add_argument("--max-ref-length", type=int, default=defaults.max_ref_length)
    p.add_argument("--max-memory-gb", type=float, default=defaults.max_memory_gb)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    cfg = ScanBenchConfig(lengths=args.lengths, backends=args.backends, width=args.width,
                          state=args.state, batch=args.batch, repeats=args.repeats,
                          threads=args.threads, max_ref_length=args.max_ref_length,
                          max_memory_gb=args.max_memory_gb)
    print(f"selective scan, E={cfg.width}, N={cfg.state}, batch {cfg.batch}, float32, "
          f"{cfg.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"{machine_description()}", flush=True)
    results = run_scan_benchmark(cfg)
    print(format_table(results))
    if any(r.extrapolated for r in results):
        print("* extrapolated, not measured (the reference would take minutes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": asdict(cfg), "machine": machine_description(),
                       "results": [asdict(r) for r in results]}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
