"""Does SSAMBA's speed depend on whether a script imports torch or ssamba first?

Each order runs in a fresh interpreter (``CHILD``, with the environment a fresh script would
have: without ``OMP_WAIT_POLICY``, which ``import ssamba`` sets off Linux): it imports the two
packages in that order, builds SSAMBA-tiny and times inference forwards; the
two orders alternate (A B A B ...) so a machine that speeds up or slows down over the run
affects both alike. Reported: min and median seconds per order and the ratio of medians.
Why it matters: torch's OpenMP threads and numba's kernels share the cores, and ssamba's thread
set-up (``ssamba/__init__.py``, ``nn/_numba.py``) must hold when torch was loaded first.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

ORDERS = ("torch-first", "ssamba-first")


# the subprocess: nothing of ssamba is imported before the order under test (``-m`` would)
CHILD = """
import sys
if sys.argv[1] == "torch-first":
    import torch
    import ssamba
else:
    import ssamba
    import torch
from ssamba.bench.import_order import run_child
run_child(*sys.argv[1:])
"""


def run_child(order: str, tokens: str, repeats: str, threads: str) -> None:
    """In the subprocess, after the imports: time ``repeats`` forwards after one warm-up, print JSON."""
    import numba
    import torch

    from ssamba.bench.measure import frames_for_tokens
    from ssamba.models.registry import create_model

    if int(threads):
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = create_model("ssamba_tiny").eval()
    fbank = torch.randn(1, frames_for_tokens(int(tokens)), 128)
    times = []
    with torch.inference_mode():
        for i in range(int(repeats) + 1):
            start = time.perf_counter()
            model.forward_features(fbank)
            if i:
                times.append(time.perf_counter() - start)
    print(json.dumps({"order": order, "times_s": times, "threading_layer": numba.threading_layer()}), flush=True)


def _child_env() -> dict[str, str]:
    """This environment without OMP_WAIT_POLICY (``import ssamba`` sets it off Linux; a user's fresh
    script that imports torch first runs without it)."""
    return {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}


def measure_import_orders(tokens: int = 512, rounds: int = 3, repeats: int = 4, threads: int | None = None,
                          timeout_s: float = 600.0) -> dict:
    """Both import orders, alternating for ``rounds`` rounds of ``repeats`` timed forwards each."""
    times: dict[str, list[float]] = {order: [] for order in ORDERS}
    layers = set()
    for _ in range(rounds):
        for order in ORDERS:
            cmd = [sys.executable, "-c", CHILD, order, str(tokens), str(repeats), str(threads or 0)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_child_env())
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                return {"tokens": tokens, "skipped": lines[-1] if lines else f"exit code {proc.returncode}"}
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            times[order] += child["times_s"]
            layers.add(child["threading_layer"])
    out = {"tokens": tokens, "threads": threads, "rounds": rounds, "repeats": repeats,
           "threading_layer": "/".join(sorted(layers))}
    for order in ORDERS:
        out[order] = {"min_s": min(times[order]), "median_s": statistics.median(times[order]),
                      "times_s": times[order]}
    out["ratio"] = out["torch-first"]["median_s"] / out["ssamba-first"]["median_s"]
    return out


def format_import_orders(result: dict) -> str:
    """One report line: both orders' median (min) and the ratio."""
    if result.get("skipped"):
        return f"import order, SSAMBA-tiny x {result['tokens']} tokens: skipped: {result['skipped']}"
    a, b = result["torch-first"], result["ssamba-first"]
    return (f"import order, SSAMBA-tiny x {result['tokens']} tokens, batch 1 (numba layer "
            f"{result['threading_layer']}): `import torch; import ssamba` median {a['median_s'] * 1e3:.1f} ms "
            f"(min {a['min_s'] * 1e3:.1f}), `import ssamba; import torch` {b['median_s'] * 1e3:.1f} ms "
            f"(min {b['min_s'] * 1e3:.1f}): ratio {result['ratio']:.3f}")
