"""Time and peak memory of one encoder configuration, measured in this process.

Run by ``ssamba.bench.efficiency`` in a fresh subprocess per configuration (CPU), so the
kernel's peak-RSS high-water mark belongs to that configuration alone:
``python -m ssamba.bench.measure '<json spec>'`` prints one JSON result line.

Engines: ``torch`` runs the model's ``forward_features``; ``onnxruntime`` exports it first
(``ssamba.export.to_onnx``, float32 or int8, into a temporary directory) and runs the graph in an
onnxruntime session with the memory arena off; its baseline is taken once the session is built,
before the first run.

Memory: CPU — after the model and input are built and one tiny (one patch column) forward has
loaded the kernels' code, write 5 to ``/proc/self/clear_refs`` (this resets VmHWM to the
current RSS), run, and report VmHWM minus that baseline; CUDA —
``max_memory_allocated`` minus the allocation after building. Contention: for every repeat
the share of all cores used by *other* processes (from ``/proc/stat`` minus this process's CPU
time); repeats above ``max_other_share`` are retried a few times and flagged if still busy.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from ssamba.nn.patch import patch_grid_size

FREQ_BINS = 128


@dataclass
class MeasureSpec:
    """One configuration: model, token count and how to run it."""

    model: str
    tokens: int
    batch: int = 1
    frames: int | None = None        # fbank frames per clip; None = the fewest with ``tokens`` patches
    mode: str = "inference"          # inference | train
    device: str = "cpu"
    attention: str | None = None     # SSAST: naive | sdpa
    scan: str | None = None          # SSAMBA: ref | chunked | fused | cuda
    dtype: str = "float32"
    engine: str = "torch"            # torch | onnxruntime (the encoder exported to a temp file first)
    quantize: str | None = None      # onnxruntime: None (float32) | int8
    depth: int | None = None         # override the model's depth (quick checks); None = the model's
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    budget_s: float = 120.0          # measured repeats are cut to fit this after the warm-up
    max_other_share: float = 0.15
    retries: int = 2


@dataclass
class MeasureResult:
    spec: dict
    frames: int
    seconds_audio: float
    times_s: list[float] = field(default_factory=list)
    other_cpu_share: list[float] = field(default_factory=list)
    # minor page faults of this process per repeat (CPU): first touches of memory the allocator had
    # handed back to the system; tens of thousands per run cost tens of ms (see nn/workspace.py)
    minor_faults: list[int] = field(default_factory=list)
    median_s: float | None = None
    min_s: float | None = None
    tokens_per_s: float | None = None
    peak_mem_mib: float | None = None     # activations: the peak above what the loaded model and kernels hold
    peak_total_mib: float | None = None   # absolute, weights included (CUDA: allocated; CPU: the process's RSS)
    contended: bool = False
    backend: str | None = None
    skipped: str | None = None
    clips_per_s: float | None = None
    # SSAMBA on CPU (one extra, instrumented run): the scan kernels' time per state update and core
    # (kernel wall time x numba threads / updates), forward and (training) backward
    scan_ns_per_update: float | None = None
    scan_backward_ns_per_update: float | None = None
    cpu_mhz: float | None = None               # /proc/cpuinfo's clock, to turn ns into cycles
    scan_cycles_per_update: float | None = None
    scan_backward_cycles_per_update: float | None = None


def frames_for_tokens(tokens: int, fshape: int = 16, tshape: int = 16, fstride: int = 16, tstride: int = 16,
                      fdim: int = FREQ_BINS) -> int:
    """Fbank frames whose patch grid has at least ``tokens`` patches (pretraining geometry by default)."""
    rows = patch_grid_size(fdim, tshape, fshape, tshape, fstride, tstride)[0]
    cols = max(1, math.ceil(tokens / rows))
    return (cols - 1) * tstride + tshape


def tokens_for_frames(frames: int, fshape: int = 16, tshape: int = 16, fstride: int = 16, tstride: int = 16,
                      fdim: int = FREQ_BINS) -> int:
    """Patches (tokens, CLS excluded) of a ``frames``-long fbank (pretraining geometry by default)."""
    rows, cols = patch_grid_size(fdim, frames, fshape, tshape, fstride, tstride)
    return rows * cols


def _proc_status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak_rss() -> float:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status("VmRSS")


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def _minor_faults() -> int:
    """Minor page faults of this process so far (all its threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(spec: MeasureSpec):
    """The model (with the requested attention / scan backend) and an input batch."""
    from ssamba.models import create_model

    overrides: dict = {"drop_path_rate": 0.0}
    if spec.depth:
        overrides["depth"] = spec.depth
    if spec.model.startswith("ssast") and spec.attention:
        overrides["attention"] = spec.attention
    if spec.model.startswith("ssamba") and spec.scan:
        overrides["scan_backend"] = spec.scan
    model = create_model(spec.model, **overrides).to(spec.device)
    c = model.config
    frames = spec.frames or frames_for_tokens(spec.tokens, c.fshape, c.tshape, c.fstride, c.tstride, c.input_fdim)
    fbank = torch.randn(spec.batch, frames, c.input_fdim, device=spec.device)
    return model, fbank, frames


def _step(model, fbank, train: bool, dtype: torch.dtype) -> None:
    autocast = torch.autocast(fbank.device.type, dtype=dtype, enabled=dtype != torch.float32)
    if train:
        with autocast:
            loss = model.forward_features(fbank).float().pow(2).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.inference_mode(), autocast:
            model.forward_features(fbank)
    if fbank.device.type == "cuda":
        torch.cuda.synchronize()


def _onnx_step(model, fbank, spec: MeasureSpec, tmp: str):
    """Export ``model`` for ``fbank``'s window into ``tmp``; returns a step running it in onnxruntime."""
    from ssamba.export import OnnxEncoder, to_onnx

    path = to_onnx(model, os.path.join(tmp, "model.onnx"), frames=fbank.shape[1], quantize=spec.quantize)
    encoder = OnnxEncoder(path, threads=spec.threads, memory_arena=False)
    x = fbank.cpu().numpy()
    return lambda: encoder.run(x)


# the fused scan kernels: name -> (index of u (slots, rows, E), index of A (slots, E, N)) in their arguments
SCAN_KERNELS = {"_biscan_kernel": (0, 3), "_biscan_backward_kernel": (0, 3)}


def scan_profile(run) -> tuple[float | None, float | None]:
    """Core-nanoseconds per state update of the forward and backward scan kernels during ``run()``:
    every kernel launch is timed (``nn._numba.PROFILE``); updates = slots x rows x E x N."""
    import numba

    from ssamba.nn import _numba

    _numba.PROFILE = []
    try:
        run()
        launches = _numba.PROFILE
    finally:
        _numba.PROFILE = None
    threads = numba.get_num_threads()
    rates = []
    for name in SCAN_KERNELS:
        seconds = updates = 0
        for kernel, spent, shapes in launches:
            if kernel == name:
                (slots, rows, width), state = shapes[SCAN_KERNELS[name][0]], shapes[SCAN_KERNELS[name][1]][2]
                seconds += spent
                updates += slots * rows * width * state
        rates.append(seconds * threads / updates * 1e9 if updates else None)
    return rates[0], rates[1]


def cpu_mhz() -> float | None:
    """The clock /proc/cpuinfo reports (first CPU), None where it is not readable."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None


def _scan_rates(run, result: MeasureResult) -> None:
    result.scan_ns_per_update, result.scan_backward_ns_per_update = scan_profile(run)
    result.cpu_mhz = cpu_mhz()
    if result.cpu_mhz:
        ghz = result.cpu_mhz / 1000
        if result.scan_ns_per_update:
            result.scan_cycles_per_update = result.scan_ns_per_update * ghz
        if result.scan_backward_ns_per_update:
            result.scan_backward_cycles_per_update = result.scan_backward_ns_per_update * ghz


def measure(spec: MeasureSpec) -> MeasureResult:
    """Warm up, then time ``repeats`` runs (fewer if over budget) and read the peak memory."""
    if spec.engine == "onnxruntime":
        with tempfile.TemporaryDirectory() as tmp:
            return _measure(spec, tmp)
    return _measure(spec, None)


def _measure(spec: MeasureSpec, tmp: str | None) -> MeasureResult:
    if spec.threads:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(0)
    model, fbank, frames = build(spec)
    result = MeasureResult(asdict(spec), frames, frames / 100.0)
    model.train(spec.mode == "train")
    dtype = getattr(torch, spec.dtype)
    cuda = fbank.device.type == "cuda"
    if tmp is not None:
        # the session has built its kernels when it is created: the baseline is taken before any
        # run (after a run, freed activations stay in the allocator's heap and would hide the peak)
        run = _onnx_step(model, fbank, spec, tmp)
        del model
    else:
        def run():
            _step(model, fbank, spec.mode == "train", dtype)
        # Load the kernels (numba's cached machine code, oneDNN primitives, thread pools) with a
        # one-column input first, so the baseline holds code and the peak holds activations.
        _step(model, fbank[:1, :model.config.tshape], spec.mode == "train", dtype)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    warm_s = 0.0
    for _ in range(max(spec.warmup, 0)):
        start = time.perf_counter()
        run()
        warm_s = time.perf_counter() - start
    repeats = spec.repeats
    if warm_s > 0:
        repeats = max(1, min(repeats, int(spec.budget_s // warm_s)))
    ncpu = os.cpu_count() or 1
    for _ in range(repeats):
        for attempt in range(spec.retries + 1):
            busy0, own0, faults0, t0 = _busy_jiffies(), _own_cpu_s(), _minor_faults(), time.perf_counter()
            run()
            wall = time.perf_counter() - t0
            faults = _minor_faults() - faults0
            busy = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK")
            other = max(0.0, busy - (_own_cpu_s() - own0)) / (ncpu * wall)
            if other <= spec.max_other_share or attempt == spec.retries:
                break
        result.times_s.append(wall)
        result.other_cpu_share.append(round(other, 3))
        if not cuda:
            result.minor_faults.append(faults)
    result.contended = any(s > spec.max_other_share for s in result.other_cpu_share)
    result.median_s = statistics.median(result.times_s)
    result.min_s = min(result.times_s)
    result.tokens_per_s = spec.batch * spec.tokens / result.median_s
    result.clips_per_s = spec.batch / result.median_s
    if cuda:
        result.peak_total_mib = torch.cuda.max_memory_allocated() / 2**20
        result.peak_mem_mib = result.peak_total_mib - base / 2**20
    else:
        result.peak_total_mib = _proc_status("VmHWM")
        # the kernel syncs per-thread RSS counters lazily: a tiny peak can read a page below the baseline
        result.peak_mem_mib = max(0.0, result.peak_total_mib - base)
    if tmp is None and not cuda and spec.model.startswith("ssamba"):
        _scan_rates(run, result)
    if tmp is not None:
        result.backend = "export" if spec.model.startswith("ssamba") else spec.attention
    elif spec.model.startswith("ssamba"):
        from ssamba.nn.scan import resolve_backend
        result.backend = str(resolve_backend(fbank, spec.scan))
    else:
        result.backend = model.config.attention
    return result


def main(argv: list[str]) -> int:
    spec = MeasureSpec(**json.loads(argv[0]))
    print(json.dumps(asdict(measure(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def label(row: dict) -> str:
    """Short name of a configuration, e.g. ``ssast_tiny/naive``, ``ssamba_tiny/fused`` or
    ``ssamba_tiny/export/onnxruntime-int8``."""
    spec = row["spec"]
    variant = spec.get("attention") if spec["model"].startswith("ssast") else (row.get("backend") or spec.get("scan") or "auto")
    engine = spec.get("engine", "torch")
    if engine == "torch":
        return f"{spec['model']}/{variant}"
    if spec["model"].startswith("ssamba"):
        variant = "export"
    return f"{spec['model']}/{variant}/{engine}" + (f"-{spec['quantize']}" if spec.get("quantize") else "")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for benchmark headers."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"
