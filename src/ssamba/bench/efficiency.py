"""Efficiency benchmark: SSAMBA vs SSAST time and peak memory against the number of tokens.

Reproduces the paper's claim (SSAMBA-tiny at ~22k tokens: 92.7 % faster, 95.4 % less memory
than SSAST-tiny; i.e. 0.073x time, 0.046x memory) on the user's hardware. Every
configuration runs in its own subprocess (``ssamba.bench.measure``) so peak memory is its own;
configurations that cannot fit are skipped with the reason. SSAST runs with both the
official-style explicit attention ("naive", what the paper measured) and PyTorch SDPA.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ssamba.bench.measure import MeasureSpec, cpu_model, frames_for_tokens, label, tokens_for_frames
from ssamba.errors import ConfigError

PAPER_RATIOS_22K = {"time": 0.073, "memory": 0.046}
DEFAULT_TOKENS = (512, 1024, 4096, 8192, 22000)
ENGINES = ("torch", "onnxruntime")


@dataclass
class BenchConfig:
    """What to compare. Lists multiply out: every model x tokens x attention/scan variant."""

    models: list[str] = field(default_factory=lambda: ["ssamba_tiny", "ssast_tiny"])
    tokens: list[int] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    frames: list[int] | None = None    # fbank frames per clip instead of tokens (e.g. 200: the demo's crops)
    batch: int = 1
    mode: str = "inference"
    device: str = "cpu"
    attention: list[str] = field(default_factory=lambda: ["naive", "sdpa"])
    scan: list[str | None] = field(default_factory=lambda: [None])
    dtype: str = "float32"
    engines: list[str] = field(default_factory=lambda: ["torch"])
    quantize: list[str | None] = field(default_factory=lambda: [None])   # onnxruntime rows only
    depth: int | None = None
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    budget_s: float = 120.0
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        bad = [t for t in self.tokens if int(t) < 1]
        if bad:
            raise ConfigError(f"--tokens {bad[0]}: token counts must be at least 1")
        short = [f for f in self.frames or [] if int(f) < 16]
        if short:
            raise ConfigError(f"--frames {short[0]}: a clip needs at least 16 frames (one patch)")
        for name in ("batch", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name} {getattr(self, name)}: must be at least 1")
        unknown = [e for e in self.engines if e not in ENGINES]
        if unknown:
            raise ConfigError(f"--engine {unknown[0]}: choose from {', '.join(ENGINES)}")
        if "onnxruntime" in self.engines:
            if self.mode != "inference" or self.device != "cpu" or self.dtype != "float32":
                raise ConfigError("--engine onnxruntime: measures float32 inference on the CPU only "
                                  f"(got mode {self.mode}, device {self.device}, dtype {self.dtype})")
        elif any(self.quantize):
            raise ConfigError("--quantize int8: applies to onnxruntime rows; add --engine onnxruntime")


def machine_info() -> dict:
    """CPU model, cores, memory, torch build: what the figures were measured on."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "mem_total_gib": round(_meminfo("MemTotal") / 2**20, 1)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _meminfo(key: str) -> float:
    """kB value of ``key`` in /proc/meminfo (0 if unavailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _variants(config: BenchConfig, model: str) -> list[dict]:
    """Per engine: SSAST once per attention; SSAMBA once per scan backend (torch) or once (the
    exported scan); onnxruntime rows once per quantization."""
    out = []
    for engine in config.engines:
        if engine == "torch":
            out += ([{"attention": a} for a in config.attention] if model.startswith("ssast")
                    else [{"scan": s} for s in config.scan])
            continue
        base = [{"attention": a} for a in config.attention] if model.startswith("ssast") else [{}]
        out += [{**b, "engine": engine, "quantize": q} for q in config.quantize for b in base]
    return out


def specs(config: BenchConfig) -> list[MeasureSpec]:
    """Every configuration to measure (see ``_variants``), for every token count and model."""
    out = []
    shapes = [(tokens_for_frames(f), f) for f in config.frames] if config.frames else [(t, None) for t in config.tokens]
    for tokens, frames in shapes:
        for model in config.models:
            for variant in _variants(config, model):
                out.append(MeasureSpec(model=model, tokens=tokens, frames=frames, batch=config.batch, mode=config.mode,
                                       device=config.device, dtype=config.dtype, repeats=config.repeats, depth=config.depth,
                                       warmup=config.warmup, threads=config.threads,
                                       budget_s=config.budget_s, **variant))
    return out


def estimated_peak_gib(spec: MeasureSpec) -> float:
    """A rough upper bound of activation memory, to skip what cannot fit instead of crashing."""
    from ssamba.models.registry import model_config

    c = model_config(spec.model)
    tokens = spec.tokens + c.num_cls_tokens
    per = 2 if spec.dtype == "bfloat16" else 4
    if c.arch == "ssast" and spec.attention != "sdpa":
        maps = spec.batch * c.num_heads * tokens * tokens * per
        return (maps * (2 * c.depth if spec.mode == "train" else 3)) / 2**30
    width = c.embed_dim * c.expand
    if c.arch == "ssamba" and spec.scan == "ref":
        states = spec.batch * width * tokens * c.d_state * per  # autograd keeps (L, E, N) per step
        return states * (2 * c.depth if spec.mode == "train" else 2) / 2**30
    if c.arch == "ssamba" and spec.engine == "onnxruntime":
        # the exported chunked scan materialises a few (L, E, N) float32 tensors per layer at once
        return 4 * spec.batch * width * tokens * c.d_state * 4 / 2**30
    # measured on CPU: training keeps ~17 (SSAMBA) / ~9 (SSAST, SDPA) float tensors of E per token and layer
    return spec.batch * tokens * width * per * (20 * c.depth if spec.mode == "train" else 20) / 2**30


def run_spec(spec: MeasureSpec, timeout_s: float) -> dict:
    """Measure one configuration in a subprocess; a crash, OOM kill or timeout becomes ``skipped``."""
    frames = spec.frames or frames_for_tokens(spec.tokens)
    base = {"spec": asdict(spec), "frames": frames, "seconds_audio": frames / 100.0}
    if spec.engine != "torch":
        base["backend"] = "export" if spec.model.startswith("ssamba") else spec.attention
    elif spec.model.startswith("ssamba"):  # name the backend a skipped row would have used
        from ssamba.nn.scan import resolve_backend
        base["backend"] = str(resolve_backend(torch.empty(0, device=spec.device), spec.scan))
    available = _meminfo("MemAvailable") / 2**20
    if spec.device == "cpu" and available and estimated_peak_gib(spec) > 0.8 * available:
        return {**base, "skipped": f"needs ~{estimated_peak_gib(spec):.0f} GiB, "
                                   f"{available:.0f} GiB available"}
    cmd = [sys.executable, "-m", "ssamba.bench.measure", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**base, "skipped": f"timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0:
        if proc.returncode < 0:
            reason = f"killed by signal {-proc.returncode} (out of memory?)"
        else:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit code {proc.returncode}"
        return {**base, "skipped": reason}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    """SSAMBA / SSAST time and memory ratio per token count, against each SSAST attention, on the
    same engine and quantization."""
    ok = [r for r in rows if not r.get("skipped")]
    out = []
    for mamba in (r for r in ok if r["spec"]["model"].startswith("ssamba")):
        size = mamba["spec"]["model"].split("_", 1)[1]
        runtime = (mamba["spec"].get("engine", "torch"), mamba["spec"].get("quantize"))
        for ast in ok:
            s = ast["spec"]
            if (s["model"] == f"ssast_{size}" and s["tokens"] == mamba["spec"]["tokens"]
                    and (s.get("engine", "torch"), s.get("quantize")) == runtime):
                out.append({"tokens": s["tokens"], "ssamba": label(mamba), "ssast": label(ast),
                            "time_ratio": mamba["median_s"] / ast["median_s"],
                            "memory_ratio": (mamba["peak_mem_mib"] / ast["peak_mem_mib"]
                                             if ast["peak_mem_mib"] else None)})
    return out


def run_benchmark(config: BenchConfig, out_dir: str | Path | None = None, progress=print) -> dict:
    """Measure every configuration, print a table as it goes, save JSON (+ PNG) under ``out_dir``."""
    rows = []
    for spec in specs(config):
        row = run_spec(spec, config.timeout_s)
        rows.append(row)
        progress(format_row(row))
    result = {"machine": machine_info(), "config": asdict(config), "results": rows,
              "ratios": ratios(rows), "paper_ratios_22k": PAPER_RATIOS_22K}
    if out_dir is not None:
        from ssamba.bench.report import save_results
        save_results(result, out_dir)
    return result


def format_row(row: dict) -> str:
    """One printable line per configuration."""
    spec = row["spec"]
    head = (f"{label(row):24s} {spec['mode']:9s} batch {spec['batch']:3d} x tokens {spec['tokens']:6d} "
            f"({row['seconds_audio']:7.1f} s audio)")
    if row.get("skipped"):
        return f"{head}  skipped: {row['skipped']}"
    flag = "  [contended]" if row.get("contended") else ""
    total = f" (total {row['peak_total_mib']:.0f})" if row.get("peak_total_mib") is not None else ""
    clips = f"  {row['clips_per_s']:7.2f} clips/s" if row.get("clips_per_s") else ""
    faults = f"  {statistics.median(row['minor_faults']):.0f} page faults/run" if row.get("minor_faults") else ""
    return (f"{head}  median {row['median_s']:8.3f} s  min {row['min_s']:8.3f} s  "
            f"peak {row['peak_mem_mib']:8.1f} MiB{total}  {row['tokens_per_s']:9.0f} tok/s{clips}"
            f"{scan_rate_text(row)}{faults}{flag}")


def scan_rate_text(row: dict) -> str:
    """'  scan 0.61 ns/update (1.6 cycles), backward ...' for SSAMBA rows that have the figures."""
    parts = []
    for what, ns, cycles in (("scan", "scan_ns_per_update", "scan_cycles_per_update"),
                             ("backward", "scan_backward_ns_per_update", "scan_backward_cycles_per_update")):
        if row.get(ns):
            clock = f" ({row[cycles]:.2f} cycles)" if row.get(cycles) else ""
            parts.append(f"{what} {row[ns]:.3f} ns/update{clock}")
    return "  " + ", ".join(parts) if parts else ""
