"""The efficiency benchmark runs end to end on tiny sizes and writes complete, consistent results."""

import json
import subprocess
import sys

import pytest

from ssamba.bench.efficiency import BenchConfig, estimated_peak_gib, ratios, specs
from ssamba.bench.measure import MeasureSpec, frames_for_tokens, label
from ssamba.errors import ConfigError


def test_tokens_map_to_frames_of_the_pretraining_grid():
    assert frames_for_tokens(512) == 1024          # 8 x 64 patches = a 10.24 s clip
    assert frames_for_tokens(22000) == 44000       # 8 x 2750 patches = 440 s
    assert frames_for_tokens(8) == 16              # one time column
    assert frames_for_tokens(9) == 32              # rounds up to whole columns


def test_specs_cover_every_variant():
    config = BenchConfig(models=["ssamba_tiny", "ssast_tiny"], tokens=[64, 128],
                         attention=["naive", "sdpa"], scan=["fused", "chunked"])
    got = {(s.model, s.tokens, s.attention, s.scan) for s in specs(config)}
    assert got == {(m, t, a, s) for t in (64, 128)
                   for (m, a, s) in [("ssast_tiny", "naive", None), ("ssast_tiny", "sdpa", None),
                                     ("ssamba_tiny", None, "fused"), ("ssamba_tiny", None, "chunked")]}


def test_naive_attention_at_long_lengths_is_estimated_not_to_fit_training():
    train = MeasureSpec(model="ssast_tiny", tokens=22000, mode="train", attention="naive")
    sdpa = MeasureSpec(model="ssast_tiny", tokens=22000, mode="train", attention="sdpa")
    assert estimated_peak_gib(train) > 50 > estimated_peak_gib(sdpa)
    mamba = MeasureSpec(model="ssamba_tiny", tokens=22000, mode="train")
    assert estimated_peak_gib(mamba) < 20  # measured ~14 GiB: it must not be skipped on a 24 GiB machine


def test_ratios_divide_matching_rows():
    def row(model, tokens, median, mem, **spec):
        return {"spec": {"model": model, "tokens": tokens, **spec}, "median_s": median,
                "peak_mem_mib": mem, "backend": spec.get("scan")}
    rows = [row("ssamba_tiny", 512, 1.0, 10.0, scan="fused"),
            row("ssast_tiny", 512, 4.0, 40.0, attention="naive"),
            row("ssast_tiny", 1024, 9.0, 90.0, attention="naive"),
            {"spec": {"model": "ssast_tiny", "tokens": 512, "attention": "sdpa"}, "skipped": "too big"}]
    (only,) = ratios(rows)
    assert only["tokens"] == 512 and only["ssast"] == "ssast_tiny/naive"
    assert only["time_ratio"] == pytest.approx(0.25) and only["memory_ratio"] == pytest.approx(0.25)


def test_cli_writes_valid_json_with_all_fields(tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "ssamba", "bench", "--tokens", "16", "32", "--repeats", "2",
           "--scan", "chunked", "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "inference_cpu.json").read_text())
    assert set(result) >= {"machine", "config", "results", "ratios", "paper_ratios_22k"}
    assert len(result["results"]) == 2 * 3  # 2 lengths x (ssamba + ssast naive + ssast sdpa)
    for row in result["results"]:
        assert not row.get("skipped"), row
        assert len(row["times_s"]) == 2 and len(row["other_cpu_share"]) == 2
        assert len(row["minor_faults"]) == 2 and all(isinstance(f, int) and f >= 0 for f in row["minor_faults"])
        assert row["min_s"] <= row["median_s"] and row["min_s"] == min(row["times_s"])
        assert row["peak_mem_mib"] >= 0 and row["tokens_per_s"] > 0
        assert row["frames"] == frames_for_tokens(row["spec"]["tokens"])
    assert len(result["ratios"]) == 4
    assert (out / "inference_cpu.png").stat().st_size > 1000
    assert "| 16 |" in (out / "inference_cpu.md").read_text()


def test_onnxruntime_rows_next_to_torch(tmp_path):
    """--engine torch onnxruntime --quantize none int8: one row per engine/quantization, each in the
    JSON and CSV, ratios only between rows of the same runtime."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "ssamba", "bench", "--tokens", "16", "--repeats", "1", "--depth", "2",
           "--attention", "sdpa", "--engine", "torch", "onnxruntime", "--quantize", "none", "int8",
           "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "inference_cpu.json").read_text())
    rows = {label(r): r for r in result["results"]}
    assert set(rows) == {"ssamba_tiny/fused", "ssamba_tiny/export/onnxruntime", "ssamba_tiny/export/onnxruntime-int8",
                         "ssast_tiny/sdpa", "ssast_tiny/sdpa/onnxruntime", "ssast_tiny/sdpa/onnxruntime-int8"}
    for row in rows.values():
        assert not row.get("skipped"), row
        assert row["median_s"] > 0 and row["peak_mem_mib"] >= 0
    assert {(q["ssamba"], q["ssast"]) for q in result["ratios"]} == {
        ("ssamba_tiny/fused", "ssast_tiny/sdpa"),
        ("ssamba_tiny/export/onnxruntime", "ssast_tiny/sdpa/onnxruntime"),
        ("ssamba_tiny/export/onnxruntime-int8", "ssast_tiny/sdpa/onnxruntime-int8")}
    lines = (out / "inference_cpu.csv").read_text().splitlines()
    assert lines[0].startswith("label,model,engine,quantize,tokens")
    csv_rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert set(csv_rows) == set(rows)
    assert csv_rows["ssamba_tiny/export/onnxruntime-int8"][2:4] == ["onnxruntime", "int8"]
    assert csv_rows["ssast_tiny/sdpa"][2:4] == ["torch", ""]


def test_onnxruntime_engine_rejects_training_and_torch_int8():
    with pytest.raises(ConfigError):
        BenchConfig(engines=["onnxruntime"], mode="train")
    with pytest.raises(ConfigError):
        BenchConfig(engines=["torch"], quantize=["int8"])
    with pytest.raises(ConfigError):
        BenchConfig(engines=["tensorrt"])


def test_frames_rows_measure_the_pretraining_shape(tmp_path):
    """--batch 4 --frames 40 --mode train: every row runs a (4, 40, 128) batch (16x16 patches: 8 x 2
    = 16 tokens), training mode, and reports the absolute peak (weights included) above the
    activations-only one."""
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "ssamba", "bench", "--frames", "40", "--batch", "4", "--mode", "train",
           "--depth", "2", "--attention", "sdpa", "--repeats", "1", "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "train_cpu.json").read_text())
    assert {label(r) for r in result["results"]} == {"ssamba_tiny/fused", "ssast_tiny/sdpa"}
    for row in result["results"]:
        assert not row.get("skipped"), row
        assert (row["frames"], row["spec"]["tokens"], row["spec"]["batch"]) == (40, 16, 4)
        assert row["spec"]["mode"] == "train" and row["spec"]["depth"] == 2
        assert row["peak_total_mib"] > row["peak_mem_mib"] >= 0
    assert len(result["ratios"]) == 1


def test_frames_shorter_than_a_patch_is_a_config_error():
    with pytest.raises(ConfigError, match="--frames 8"):
        BenchConfig(frames=[8])


def test_ssamba_rows_report_scan_rate_and_every_row_clips_per_second(tmp_path):
    """--batch 2 --mode train: SSAMBA rows carry the scan kernels' forward and backward core-ns per
    state update (cycles from the reported clock), every row clips/s = batch / median; the
    Markdown report has the scan and throughput tables."""
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "ssamba", "bench", "--tokens", "16", "--batch", "2", "--mode", "train",
           "--depth", "2", "--attention", "sdpa", "--repeats", "1", "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {label(r): r for r in json.loads((out / "train_cpu.json").read_text())["results"]}
    for row in rows.values():
        assert row["clips_per_s"] == pytest.approx(2 / row["median_s"])
    mamba, ast = rows["ssamba_tiny/fused"], rows["ssast_tiny/sdpa"]
    assert 0 < mamba["scan_ns_per_update"] < mamba["scan_backward_ns_per_update"] < 1e3
    if mamba["cpu_mhz"]:
        assert mamba["scan_cycles_per_update"] == pytest.approx(mamba["scan_ns_per_update"] * mamba["cpu_mhz"] / 1e3)
    assert ast["scan_ns_per_update"] is None
    report = (out / "train_cpu.md").read_text()
    assert "| 16 | ssamba_tiny/fused | " in report and "| 16 | 2 | ssast_tiny/sdpa | " in report


def test_scan_profile_counts_state_updates(monkeypatch):
    """A fused forward of a 2-layer SSAMBA (two mixers) at batch 3 x 41 tokens: one scan launch per
    mixer for its 2 directions, and the rate is their seconds x threads / updates."""
    import numba
    import torch

    from ssamba.bench import measure
    from ssamba.models.registry import create_model
    from ssamba.nn import _numba

    torch.manual_seed(0)
    model = create_model("ssamba_tiny", depth=2).eval()
    fbank = torch.randn(3, 80, 128)                  # 8 x 5 patches + CLS = 41 tokens per clip
    seen = []
    real_launch = _numba.launch

    def recording_launch(kernel, *args):
        real_launch(kernel, *args)
        seen.append(_numba.PROFILE[-1])

    monkeypatch.setattr("ssamba.nn.bimamba_fused.launch", recording_launch)
    with torch.no_grad():
        forward, backward = measure.scan_profile(lambda: model.forward_features(fbank))
    scans = [entry for entry in seen if entry[0] == "_biscan_kernel"]
    assert [entry[2][0] for entry in scans] == [(2, 3 * 41, 384)] * 2     # u: (directions, rows, E)
    assert backward is None
    seconds = sum(entry[1] for entry in scans)
    assert forward == pytest.approx(seconds * numba.get_num_threads() / (2 * 2 * 3 * 41 * 384 * 16) * 1e9)


def test_import_order_line_and_child_environment(monkeypatch):
    from ssamba.bench.import_order import _child_env, format_import_orders

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert "OMP_WAIT_POLICY" not in _child_env()     # a fresh script that imports torch first has none
    result = {"tokens": 512, "threading_layer": "omp", "ratio": 1.05,
              "torch-first": {"min_s": 0.1, "median_s": 0.105}, "ssamba-first": {"min_s": 0.098, "median_s": 0.1}}
    line = format_import_orders(result)
    assert "import torch; import ssamba` median 105.0 ms (min 100.0)" in line and "ratio 1.050" in line


@pytest.mark.slow
def test_import_orders_measured_in_fresh_interpreters():
    from ssamba.bench.import_order import measure_import_orders

    result = measure_import_orders(tokens=16, rounds=1, repeats=1, threads=1)
    assert not result.get("skipped"), result
    for order in ("torch-first", "ssamba-first"):
        assert len(result[order]["times_s"]) == 1 and result[order]["min_s"] > 0
    assert result["ratio"] == pytest.approx(result["torch-first"]["median_s"] / result["ssamba-first"]["median_s"])


def test_minor_fault_counter_sees_first_touches_of_fresh_memory():
    """The bench's per-run page-fault figure counts what it says: writing 32 MiB of memory fresh from
    the system faults on (about) each of its 4 KiB pages."""
    import mmap

    from ssamba.bench.measure import _minor_faults

    pages = (32 << 20) // mmap.PAGESIZE
    region = mmap.mmap(-1, pages * mmap.PAGESIZE)     # anonymous, untouched: no page mapped yet
    if hasattr(mmap, "MADV_NOHUGEPAGE"):              # transparent huge pages would fault once per 2 MiB
        region.madvise(mmap.MADV_NOHUGEPAGE)
    before = _minor_faults()
    for page in range(pages):
        region[page * mmap.PAGESIZE] = 1
    faults = _minor_faults() - before
    region.close()
    assert pages * 0.9 <= faults <= pages * 1.5, (faults, pages)
