"""Resume after SIGKILL: the killed-and-resumed run logs exactly the uninterrupted run's per-step losses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssamba.train.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]


def make_audio_folder(root: Path, n: int = 12, seconds: float = 2.0, seed: int = 0) -> Path:
    """Synthetic 16 kHz clips (chirps + noise) of varied lengths in a folder."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dur = seconds * (0.6 + 0.8 * rng.random())
        t = np.arange(int(16000 * dur)) / 16000
        f0 = 200 + 1500 * rng.random()
        wave = 0.3 * np.sin(2 * np.pi * (f0 + 300 * t) * t) + 0.05 * rng.standard_normal(t.shape)
        sf.write(root / f"clip{i:03d}.flac", wave.astype(np.float32), 16000)
    return root


def pretrain_cmd(data: Path, out: Path, steps: int, every: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ssamba", "pretrain", "--config", str(REPO / "configs/pretrain/ssamba_tiny_cpu.yaml"),
            "--data", str(data), "--out", str(out), "model.overrides.depth=2", "model.overrides.embed_dim=32",
            "data.crop_frames=128", "train.batch_size=4", f"train.max_steps={steps}", f"train.checkpoint_every={every}",
            "train.num_workers=1", "train.num_threads=1", "train.progress=false", "train.warmup_steps=3",
            "train.plateau_every=5", *extra]


def run_killed_and_resumed(tmp_path: Path, steps: int, every: int, kill_after: int) -> tuple[list, list]:
    data = make_audio_folder(tmp_path / "audio")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run(pretrain_cmd(data, full, steps, every), check=True, env=env, timeout=900, capture_output=True)
    proc = subprocess.Popen(pretrain_cmd(data, part, steps, every), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = part / "checkpoints" / f"step-{kill_after}"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no clean exit: whatever was being written is abandoned
    proc.wait()
    assert marker.exists(), "the run ended before writing the checkpoint to kill after"
    killed_at = max(r["step"] for r in read_metrics(part / "metrics.csv"))
    assert killed_at < steps
    subprocess.run(pretrain_cmd(data, part, steps, every, "--resume"), check=True, env=env, timeout=900,
                   capture_output=True)
    return read_metrics(full / "metrics.csv"), read_metrics(part / "metrics.csv")


def test_sigkill_resume_identical_losses(tmp_path):
    full, part = run_killed_and_resumed(tmp_path, steps=12, every=4, kill_after=4)
    assert [r["step"] for r in part] == list(range(1, 13))
    assert [r["loss"] for r in full] == [r["loss"] for r in part]
    assert [r["acc"] for r in full] == [r["acc"] for r in part]


@pytest.mark.slow
def test_sigkill_resume_long_run(tmp_path):
    # "2k steps-equivalent": many epochs over a small corpus, with plateau checks, LR halving and
    # several checkpoints before the kill
    full, part = run_killed_and_resumed(tmp_path, steps=300, every=40, kill_after=160)
    assert len(part) == 300
    assert [r["loss"] for r in full] == [r["loss"] for r in part]
    assert [r["lr"] for r in full] == [r["lr"] for r in part]
