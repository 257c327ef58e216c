"""numba's on-disk cache of the fused kernels in the situations users meet: a cache location that
cannot be written (read-only install), a cache written on another CPU, and several processes
compiling into one empty cache at once (DDP ranks, DataLoader workers). Each case runs fresh
subprocesses, compiles the fused scan, and checks its result against the reference scan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# float32 kernel vs the float64-accumulating reference on values of order 1: a few ulps
PROGRAM = """
import torch
from ssamba.nn.scan import selective_scan_ref
from ssamba.nn.scan_fused import selective_scan_fused
g = torch.Generator().manual_seed(0)
u, delta = torch.randn(2, 20, 37, generator=g), torch.rand(2, 20, 37, generator=g)
A, B, C = -torch.rand(20, 4, generator=g), torch.randn(2, 4, 37, generator=g), torch.randn(2, 4, 37, generator=g)
diff = (selective_scan_fused(u, delta, A, B, C) - selective_scan_ref(u, delta, A, B, C)).abs().max().item()
assert diff < 1e-4, diff
print("ok", diff)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    return {**env, "PYTHONPATH": str(SRC), **extra}


def _run(env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _check(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0 and out.startswith("ok"), err[-2000:]


def test_unwritable_cache_location_still_runs(tmp_path):
    """NUMBA_CACHE_DIR under a regular file (nothing can be created there, even as root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _check(_run(_env(NUMBA_CACHE_DIR=str(blocker / "cache"))))


def test_read_only_install_falls_back_and_runs(tmp_path):
    """A copy of the package whose in-tree __pycache__ cannot exist (a file stands there)."""
    copy = tmp_path / "site" / "ssamba"
    shutil.copytree(SRC / "ssamba", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "nn" / "__pycache__").write_text("read-only install: no cache here")
    env = _env(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"))
    env["PYTHONPATH"] = str(copy.parent)
    _check(_run(env))


def test_cache_from_another_cpu_is_not_reused(tmp_path):
    cache = tmp_path / "cache"
    _check(_run(_env(NUMBA_CACHE_DIR=str(cache), NUMBA_CPU_NAME="generic")))
    generic = set(cache.rglob("*.nbc"))
    assert generic, "the first run wrote no cache"
    _check(_run(_env(NUMBA_CACHE_DIR=str(cache))))   # the host CPU: compiles its own entry
    assert set(cache.rglob("*.nbc")) > generic


def test_two_processes_compiling_into_one_empty_cache(tmp_path):
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first, second = _run(env), _run(env)
    _check(first)
    _check(second)
    _check(_run(env))   # and a third that loads what they wrote
