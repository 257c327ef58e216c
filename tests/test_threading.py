"""numba's threads and torch's: the fused kernels run on torch's OpenMP team whatever the import
order, keep the user's torch thread count, and still run in a child forked after the parent used
them (GNU OpenMP cannot: the child runs them on one thread). Fresh interpreters, because the
threading layer is chosen once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

PROGRAM = """
import os, sys
if sys.argv[1] == "torch-first":
    import torch
    import ssamba
else:
    import ssamba
    import torch
import numba
from ssamba.nn.scan import selective_scan_ref
from ssamba.nn.scan_fused import selective_scan_fused
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
u, delta = torch.randn(2, 20, 37, generator=g), torch.rand(2, 20, 37, generator=g)
A, B, C = -torch.rand(20, 4, generator=g), torch.randn(2, 4, 37, generator=g), torch.randn(2, 4, 37, generator=g)
want = selective_scan_ref(u, delta, A, B, C)
assert (selective_scan_fused(u, delta, A, B, C) - want).abs().max().item() < 1e-4
print(numba.threading_layer(), torch.get_num_threads(), flush=True)
pid = os.fork()
if pid == 0:
    ok = (selective_scan_fused(u, delta, A, B, C) - want).abs().max().item() < 1e-4
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.parametrize("order", ["torch-first", pytest.param("ssamba-first", marks=pytest.mark.slow)])
def test_kernels_share_torch_openmp_team_in_either_import_order(order):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "OMP_"))}
    env["PYTHONPATH"] = str(SRC)
    proc = subprocess.run([sys.executable, "-c", PROGRAM, order], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    layer, threads, _, child = proc.stdout.split()
    import torch
    if "ATen parallel backend: OpenMP" in torch.__config__.parallel_info() and sys.platform.startswith("linux"):
        assert layer == "omp"        # numba's parallel loops run on torch's OpenMP threads
    assert threads == "1"            # numba's pool start-up did not change torch's thread count
    assert child == "0"              # a forked child computes the same (on one thread)
