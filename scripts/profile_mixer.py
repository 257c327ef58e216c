"""Timing of SSAMBA-tiny against SDPA SSAST-tiny at the shapes users train and embed at.

    PYTHONPATH=src python scripts/profile_mixer.py [--threads 2] [--repeats 5] [--no-eager] [--profile]

Prints, for SSAMBA (default: the fused training Function), SSAMBA through the eager autograd
path (``SSAMBA_FUSED_TRAINING=0``, a before/after in the same run; inference runs the same
kernels in both) and SDPA SSAST-tiny:
  * 512 tokens (1024 frames), batch 1: inference and one training step (forward + backward);
  * the pretraining shape: 6-layer encoders, batch 16 x 200 frames (96 tokens each),
    forward + backward + AdamW;
median and min milliseconds over interleaved repeats, the ratio to SSAST, the bytes autograd
saves for the backward (activation memory), and with --profile a per-op profile of SSAMBA's
training steps.
Not a test; the numbers are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see ssamba.bench.scan

import torch  # noqa: E402

import ssamba  # noqa: E402
from ssamba.nn.mamba import FUSED_TRAINING_ENV  # noqa: E402


@contextlib.contextmanager
def eager_training_path():
    """Train the mixers through the eager autograd path (SSAMBA_FUSED_TRAINING=0) inside the block."""
    before = os.environ.get(FUSED_TRAINING_ENV)
    os.environ[FUSED_TRAINING_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[FUSED_TRAINING_ENV]
        else:
            os.environ[FUSED_TRAINING_ENV] = before


def saved_mib(fn) -> float:
    """MiB of distinct tensor storage autograd keeps for the backward of ``fn()``."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values()) / 2**20


def make_cases(args) -> dict:
    """name -> (model, input, step function) for every timed configuration."""
    torch.manual_seed(0)
    cases = {}
    for label, name in (("ssamba", "ssamba_tiny"), ("ssast", "ssast_tiny")):
        model = ssamba.create_model(name, attention="sdpa") if label == "ssast" else ssamba.create_model(name)
        fbank = torch.randn(1, 1024, 128)

        def infer(model=model, fbank=fbank):
            model.eval()
            with torch.no_grad():
                model.forward_features(fbank)

        def train(model=model, fbank=fbank):
            model.train()
            model.forward_features(fbank).square().mean().backward()
        cases[f"512 tok infer  {label}"] = infer
        cases[f"512 tok train  {label}"] = train

        small = ssamba.create_model(name, depth=6, attention="sdpa") if label == "ssast" else \
            ssamba.create_model(name, depth=6)
        opt = torch.optim.AdamW(small.parameters(), lr=1e-4)
        crops = torch.randn(16, 200, 128)

        def pretrain(model=small, opt=opt, crops=crops):
            model.train()
            opt.zero_grad(set_to_none=True)
            model.forward_features(crops).square().mean().backward()
            opt.step()
        cases[f"16x200 pretrain {label}"] = pretrain
    if args.eager:
        for key in [k for k in cases if k.endswith("ssamba") and "infer" not in k]:
            fn = cases[key]

            def eager(fn=fn):
                with eager_training_path():
                    fn()
            cases[key.replace("ssamba", "ssamba-eagertrain")] = eager
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-eager", dest="eager", action="store_false",
                        help="skip the eager training path (SSAMBA_FUSED_TRAINING=0)")
    parser.add_argument("--profile", action="store_true", help="also print per-op profiles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    cases = make_cases(args)
    for fn in cases.values():      # warm-up (numba compiles or loads its cache here)
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleaved, so load changes hit every case alike
        for key, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats (median / min ms)")
    for key in cases:
        med, low = statistics.median(times[key]) * 1e3, min(times[key]) * 1e3
        base = key.rsplit(" ", 1)[0] + " ssast"
        ratio = statistics.median(times[key]) / statistics.median(times[base])
        print(f"  {key:28s} {med:8.1f} {low:8.1f}   {ratio:5.2f}x ssast")
    print("activation memory saved for the backward (MiB):")
    for key, fn in cases.items():
        if "infer" not in key:
            model_fn = fn
            print(f"  {key:28s} {saved_mib(lambda: _forward_only(key, model_fn)):8.1f}")
    from torch.profiler import ProfilerActivity, profile
    for key in [k for k in cases if "ssamba" in k and "infer" not in k and args.profile]:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            cases[key]()
        print(f"per-op profile, {key} (self CPU time):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def _forward_only(key: str, fn):
    """Run the case with backward() and step() disabled, returning nothing (for saved_mib)."""
    real_backward = torch.Tensor.backward
    torch.Tensor.backward = lambda self, *a, **k: None
    try:
        fn()
    finally:
        torch.Tensor.backward = real_backward


if __name__ == "__main__":
    main()
