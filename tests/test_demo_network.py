"""`ssamba demo --quick` on real recordings: the smallest demo package (sonic-pi-samples, 22 MB),
fetched with apt-get, its samples sorted into one folder per family and passed as `--corpus`.
(The manifest and cache checks of the fetch itself live in test_demo_corpus_network.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import ssamba
from ssamba.demo.corpus import build_demo_corpus

pytestmark = pytest.mark.network


def test_quick_demo_on_real_sonic_pi_samples(tmp_path):
    if shutil.which("apt-get") is None or subprocess.run(["apt-cache", "show", "sonic-pi-samples"],
                                                          capture_output=True).returncode != 0:
        pytest.skip("apt-get or its package lists (apt-get update) are not available")
    corpus = build_demo_corpus(tmp_path / "cache", packages=["sonic-pi-samples"])
    folders = tmp_path / "by_family"
    for f in corpus.files:
        family = f.labels.get("sample_family") or f.path.stem.split("_")[0].lower()
        target = folders / family / f.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f.path)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", "import sys; from ssamba.cli import main; sys.exit(main())",
                          "demo", "--quick", "--corpus", str(folders), "--cache", str(tmp_path / "cache"),
                          "--out", str(out), "--minutes", "0.1"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {r["task"] for r in results["results"]} == {"folder"}
    # 10 probe rows (log-mel, 3 encoders x mean, mean‖std and bands) + 3 fine-tuned encoders
    assert len(results["results"]) == 13 and all(0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1
                                                 for r in results["results"])
    assert sum(r["method"].endswith(", fine-tuned") for r in results["results"]) == 3
    short = [f for f in corpus.files if f.duration < 0.03]  # elec_tick.flac: 311 samples at 16 kHz
    assert results["corpus"]["left_out_too_short"] == len(short) >= 1
    assert results["corpus"]["files"] == len(corpus.files) - len(short)
    assert "folder" in (out / "report.md").read_text()
    assert ssamba.load(out / "ssamba" / "encoder").config.arch == "ssamba"
