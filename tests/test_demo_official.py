"""The demo and the official weights: fetched from a Hub-layout cache when there, skipped with one
line saying why when offline (at once: one connection attempt, no retries), named in the report."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hub_helpers import cache_files, write_hub_cache

from ssamba.checkpoints import hub
from ssamba.demo.evaluate import ProbeResult
from ssamba.demo.official import METHOD, fetch_official, skipped
from ssamba.demo.pipeline import DemoConfig
from ssamba.demo.report import build_document

FIX = Path(__file__).parent / "fixtures" / "official"


def test_offline_with_nothing_cached_skips_and_says_why(hub_cache):
    info = fetch_official()
    assert not info.used and info.path is None
    assert info.sentence() == ("Official SSAMBA-tiny weights (official:ssamba_tiny_400) skipped: offline mode "
                               "(HF_HUB_OFFLINE=1) and they are not in the Hugging Face cache.")
    assert cache_files(hub_cache) == set()


def test_no_network_is_found_out_with_one_attempt(hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)   # online mode, but the test session has no network
    start = time.perf_counter()
    info = fetch_official()
    assert time.perf_counter() - start < 3   # huggingface_hub's own retries take ~25 s
    assert not info.used and "not in the Hugging Face cache and huggingface.co cannot be reached" in info.reason
    assert "\n" not in info.sentence() and cache_files(hub_cache) == set()


def test_cached_official_file_is_used_and_a_broken_one_skipped(hub_cache):
    write_hub_cache(hub_cache, hub.OFFICIAL_REPO, {"ssamba_tiny_400.pth": FIX / "ssamba_official.pth",
                                                   "ssamba_tiny_300.pth": b"<html>not a checkpoint</html>"})
    info = fetch_official()
    assert info.used and Path(info.path).read_bytes() == (FIX / "ssamba_official.pth").read_bytes()
    assert info.sentence().startswith("Official weights: `ssamba_tiny_400.pth` (official:ssamba_tiny_400; "
                                      "SSAMBA D=64, 4 layers, pretrained on AudioSet-2M + LibriSpeech")
    broken = fetch_official("ssamba_tiny_300")
    assert not broken.used and broken.reason.startswith("not a loadable PyTorch checkpoint")
    assert str(hub_cache) not in broken.reason


def _task(name: str) -> SimpleNamespace:
    summary = {"classes": 3, "train_items": 9, "train_groups": 3, "test_items": 6, "test_groups": 2}
    return SimpleNamespace(name=name, chance=0.34, description="toy", group_kind="group", summary=lambda: summary)


def _document(official, methods: list[str]) -> list[tuple]:
    """The report's blocks for a made-up run whose results hold ``methods`` on two tasks."""
    tasks = [_task("voice_pack"), _task("word")]
    results = [ProbeResult(t.name, m, 0.5, 0.4, 0.6, 0.5, 8, np.zeros(1), np.zeros(1)) for t in tasks for m in methods]
    run = {"metrics": {"loss": 1.0, "acc": 0.5}, "run_config": {"model": {"name": "ssamba_tiny", "overrides": {"depth": 4}}},
           "encoder_parameters": 1e6, "steps": 3, "encoder_dir": "out/ssamba/encoder", "run_dir": "out/ssamba"}
    corpus = {"pretraining_clips": 10, "hours": 0.1, "files": 12, "root": "corpus", "probe_clips": 8,
              "left_out_too_short": 0, "by_source": {}, "packages": []}
    images = {k: Path(f"{k}.png") for k in ("probe_accuracy", "loss_curves", "embedding_pca", "confusion")}
    environment = {"cpus": 2, "torch": "2", "threads": 2}
    return build_document(DemoConfig.quick_preset(), corpus, tasks, {"ssamba": run, "ssast": run}, results,
                          {"total": 60.0}, environment, images, official=official)


@pytest.mark.parametrize("used", [True, False])
def test_report_names_the_official_weights_and_their_rows(used):
    methods = ["log-mel stats", "SSAMBA random init", "SSAMBA pretrained", "SSAST pretrained"]
    info = skipped("offline mode (HF_HUB_OFFLINE=1) and they are not in the Hugging Face cache")
    if used:
        info.used, info.path, info.reason, info.shape = True, "/cache/ssamba_tiny_400.pth", None, "D=192, 24 layers"
        info.window_frames = 200
    doc = _document(info, methods + ([METHOD] if used else []))
    assert ("p", info.sentence()) in doc
    assert ("same 200-frame windows" in info.sentence()) == used
    headline = next(b for b in doc if b[0] == "table" and "majority" in b[1])
    assert (METHOD in headline[1]) == used and len(headline[1]) == 2 + len(methods) + used


@pytest.mark.slow
def test_quick_demo_with_official_weights_in_the_cache(hub_cache, tmp_path):
    """The online path end to end (~45 s): the official file served from the Hub cache is probed
    (mean, mean‖std, bands) and fine-tuned beside the demo's encoders, and the report names it."""
    import json

    from ssamba.demo.pipeline import run_demo
    from ssamba.demo.synthetic import make_synthetic_corpus

    write_hub_cache(hub_cache, hub.OFFICIAL_REPO, {"ssamba_tiny_400.pth": FIX / "ssamba_official.pth"})
    corpus = make_synthetic_corpus(tmp_path / "corpus")
    result = run_demo(tmp_path / "out", corpus=corpus, cache=tmp_path / "cache",
                      config=DemoConfig.quick_preset(official=True, minutes=0.05), progress=lambda line: None)
    methods = {r["method"] for r in result.results}
    assert {METHOD, METHOD + ", mean‖std", METHOD + ", bands", METHOD + ", fine-tuned"} <= methods
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["official"]
    assert saved["used"] and saved["file"] == "ssamba_tiny_400.pth"
    assert saved["window_frames"] == DemoConfig.quick_preset().crop_frames   # run at the demo's windows
    assert "Official weights: `ssamba_tiny_400.pth`" in result.report_md.read_text()
