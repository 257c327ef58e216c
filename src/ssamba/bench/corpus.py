"""Throughput of embedding a folder of mixed-length clips: padded to the window vs native + bucketed.

For each model (a registry name such as ``ssamba_tiny``, or a checkpoint that ``ssamba.load``
reads) and each window mode of ``ssamba.inference.Embedder`` — ``padded`` (every clip shorter
than the window padded to it, the official recipe) and ``native`` (clips at their own length,
batched by length buckets with per-clip lengths) — the same clips are embedded in one run and
timed: clips/s and audio-seconds/s of the encoder and pooling. Reading audio and computing the
fbank happen once, before timing, and are reported apart (they cost the same in both modes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ssamba.audio import list_audio_files, load_audio
from ssamba.bench.efficiency import machine_info
from ssamba.errors import AudioError, ConfigError

MODES = ("padded", "native")
FIELDS = ("model", "window", "clips", "audio_s", "seconds", "clips_per_s", "audio_s_per_s", "speedup")


@dataclass
class CorpusBenchConfig:
    """What to measure; ``limit`` takes that many clips spread evenly over the sorted folder."""

    corpus: str
    models: list[str] = field(default_factory=lambda: ["ssamba_tiny", "ssast_tiny"])
    batch_size: int = 16
    limit: int | None = None
    threads: int | None = None
    depth: int | None = None          # quick checks: fewer layers
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not Path(self.corpus).is_dir():
            raise ConfigError(f"--corpus {self.corpus}: not a folder")
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError("--batch and --limit must be at least 1")


def _encoder(name: str, depth: int | None, device: str) -> torch.nn.Module:
    """A registry model (random weights: speed does not depend on them) or a loaded checkpoint."""
    from ssamba.models.registry import create_model, list_models
    if name in list_models():
        overrides = {"drop_path_rate": 0.0, **({"depth": depth} if depth else {})}
        return create_model(name, **overrides).to(device).eval()
    from ssamba.models.checkpoint import load
    return load(name).to(device).eval()


def _clips(config: CorpusBenchConfig) -> list[Path]:
    files = list_audio_files(config.corpus)
    if not files:
        raise ConfigError(f"--corpus {config.corpus}: no audio files found")
    if config.limit and config.limit < len(files):
        step = len(files) / config.limit
        files = [files[int(i * step)] for i in range(config.limit)]
    return files


def run_corpus_bench(config: CorpusBenchConfig, progress=print) -> dict:
    """Measure every model x window mode on the same clips; returns the result dict (see ``save``)."""
    from ssamba.inference import Embedder

    if config.threads:
        torch.set_num_threads(config.threads)
    files = _clips(config)
    start = time.perf_counter()
    waves, kept, skipped = [], [], []
    for path in files:    # a clip with no whole 25 ms frame (the demo corpus has clicks) has nothing to embed
        try:
            waves.append(load_audio(path))
            kept.append(path)
        except AudioError as exc:
            skipped.append(str(exc))
    read_s = time.perf_counter() - start
    files = kept
    if not files:
        raise ConfigError(f"--corpus {config.corpus}: no clip could be read ({skipped[0]})")
    if skipped:
        progress(f"left out {len(skipped)} clip(s) that cannot be embedded, e.g. {skipped[0]}")
    audio_s = sum(len(w) for w in waves) / 16000.0
    rows, feature_s = [], {}
    for name in config.models:
        model = _encoder(name, config.depth, config.device)
        embedders = {mode: Embedder(model, device=config.device, batch_size=config.batch_size, window=mode)
                     for mode in MODES}
        start = time.perf_counter()
        fbanks = [embedders["padded"].features(w) for w in waves]
        feature_s[name] = time.perf_counter() - start
        for mode in MODES:    # warm-up (numba compiles, allocators grow) on a few clips of every length
            embedders[mode].scene_from_fbanks(sorted(fbanks, key=len)[::max(1, len(fbanks) // 8)])
        times = {}
        for mode in MODES:
            start = time.perf_counter()
            embedders[mode].scene_from_fbanks(fbanks)
            times[mode] = time.perf_counter() - start
        for mode in MODES:
            row = {"model": name, "window": mode, "clips": len(files), "audio_s": round(audio_s, 2),
                   "seconds": round(times[mode], 6), "clips_per_s": round(len(files) / times[mode], 2),
                   "audio_s_per_s": round(audio_s / times[mode], 1),
                   "speedup": round(times["padded"] / times[mode], 2)}
            rows.append(row)
            progress(format_row(row))
    return {"machine": machine_info(), "config": asdict(config), "read_audio_s": round(read_s, 2),
            "left_out": skipped,
            "fbank_s": {k: round(v, 2) for k, v in feature_s.items()}, "results": rows}


def format_row(row: dict) -> str:
    return (f"{row['model']:24s} {row['window']:7s} {row['clips']:6d} clips ({row['audio_s']:9.1f} s audio)  "
            f"{row['seconds']:9.2f} s  {row['clips_per_s']:8.2f} clips/s  {row['audio_s_per_s']:8.1f} audio-s/s  "
            f"x{row['speedup']:.2f} vs padded")


def markdown_table(result: dict) -> str:
    """The rows as a Markdown table, with what they were measured on."""
    lines = ["| " + " | ".join(FIELDS) + " |", "|" + "---|" * len(FIELDS)]
    lines += ["| " + " | ".join(f"{row[k]:.3f}" if k == "seconds" else str(row[k]) for k in FIELDS) + " |"
              for row in result["results"]]
    m = result["machine"]
    lines.append(f"\n{m['cpu']}, {m['threads']} threads, torch {m['torch']}; batch {result['config']['batch_size']}; "
                 f"encoder + pooling time (fbank computed once beforehand: {result['fbank_s']} s).")
    return "\n".join(lines) + "\n"


def save(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``corpus.json`` and ``corpus.md`` into ``out_dir`` (together, atomically)."""
    from ssamba.checkpoints.format import atomic_write_all

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "corpus.json", "md": out / "corpus.md"}
    texts = {paths["json"]: json.dumps(result, indent=2), paths["md"]: markdown_table(result)}
    atomic_write_all({path: (lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
                      for path, text in texts.items()})
    return paths
