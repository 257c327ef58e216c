"""Benchmark output: JSON, CSV, a Markdown table with SSAMBA/SSAST ratios, and a log-log plot."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from ssamba.bench.measure import label
from ssamba.checkpoints.format import atomic_write_text


def markdown_table(result: dict) -> str:
    """Seconds per forward (peak MiB) per configuration and token count, then the ratios."""
    rows = result["results"]
    tokens = sorted({r["spec"]["tokens"] for r in rows})
    names = sorted({label(r) for r in rows})
    cells = {(label(r), r["spec"]["tokens"]): r for r in rows}
    mode = rows[0]["spec"]["mode"] if rows else "inference"
    lines = [f"Median seconds per {'forward + backward' if mode == 'train' else 'forward'} "
             f"(peak MiB); machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"torch {result['machine']['torch']}", "",
             "| tokens | audio (s) | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for t in tokens:
        any_row = next(r for r in rows if r["spec"]["tokens"] == t)
        vals = []
        for n in names:
            r = cells.get((n, t))
            if r is None:
                vals.append("")
            elif r.get("skipped"):
                vals.append(f"skipped ({r['skipped']})")
            else:
                vals.append(f"{r['median_s']:.3f} ({r['peak_mem_mib']:.0f})" + (" *" if r.get("contended") else ""))
        lines.append(f"| {t} | {any_row['seconds_audio']:.1f} | " + " | ".join(vals) + " |")
    if result.get("ratios"):
        paper = result.get("paper_ratios_22k", {})
        lines += ["", f"SSAMBA / SSAST (paper at ~22k tokens, GPU: {paper.get('time')}x time, "
                      f"{paper.get('memory')}x memory)", "",
                  "| tokens | SSAMBA | vs SSAST | time ratio | memory ratio |", "|---|---|---|---|---|"]
        for q in sorted(result["ratios"], key=lambda q: (q["tokens"], q["ssamba"], q["ssast"])):
            mem = f"{q['memory_ratio']:.3f}" if q["memory_ratio"] is not None else "n/a"
            lines.append(f"| {q['tokens']} | {q['ssamba']} | {q['ssast']} | {q['time_ratio']:.3f} | {mem} |")
    lines += _scan_and_throughput(rows)
    if result.get("import_order"):
        from ssamba.bench.import_order import format_import_orders
        lines += ["", format_import_orders(result["import_order"])]
    if any(r.get("contended") for r in rows):
        lines += ["", "\\* other processes used more than 15 % of the CPU during a repeat: unreliable."]
    return "\n".join(lines) + "\n"


def _scan_and_throughput(rows: list[dict]) -> list[str]:
    """The SSAMBA rows' scan kernel figures (core-ns and cycles per state update), and clips/s of
    every row when the batch has several clips."""
    ok = [r for r in rows if not r.get("skipped")]
    lines = []
    scan = [r for r in ok if r.get("scan_ns_per_update")]
    if scan:
        mhz = next((r["cpu_mhz"] for r in scan if r.get("cpu_mhz")), None)
        clock = f", cycles at the {mhz:.0f} MHz /proc/cpuinfo reports" if mhz else ""
        lines += ["", f"Scan kernel: nanoseconds per state update and core (kernel time x threads / updates{clock})",
                  "", "| tokens | SSAMBA | forward ns (cycles) | backward ns (cycles) | backward / forward |",
                  "|---|---|---|---|---|"]
        for r in sorted(scan, key=lambda r: (r["spec"]["tokens"], label(r))):
            def cell(ns, cycles):
                return "" if not r.get(ns) else f"{r[ns]:.3f}" + (f" ({r[cycles]:.2f})" if r.get(cycles) else "")
            back = r.get("scan_backward_ns_per_update")
            ratio = f"{back / r['scan_ns_per_update']:.2f}" if back else ""
            lines.append(f"| {r['spec']['tokens']} | {label(r)} | {cell('scan_ns_per_update', 'scan_cycles_per_update')} | "
                         f"{cell('scan_backward_ns_per_update', 'scan_backward_cycles_per_update')} | {ratio} |")
    if any(r["spec"]["batch"] > 1 for r in ok):
        lines += ["", "Throughput", "", "| tokens | batch | configuration | clips/s |", "|---|---|---|---|"]
        for r in sorted(ok, key=lambda r: (r["spec"]["tokens"], label(r))):
            lines.append(f"| {r['spec']['tokens']} | {r['spec']['batch']} | {label(r)} | "
                         f"{r['spec']['batch'] / r['median_s']:.2f} |")
    return lines


def plot(result: dict, path: str | Path) -> None:
    """Time and peak memory against tokens, log-log, one line per model/backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    for r in result["results"]:
        if not r.get("skipped"):
            series[label(r)].append((r["spec"]["tokens"], r["median_s"], max(r["peak_mem_mib"], 1e-3)))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, points in sorted(series.items()):
        points.sort()
        x = [p[0] for p in points]
        ax_t.plot(x, [p[1] for p in points], marker="o", label=name)
        ax_m.plot(x, [p[2] for p in points], marker="o", label=name)
    mode = result["config"]["mode"]
    for ax, ylabel in ((ax_t, f"seconds per {'train step' if mode == 'train' else 'forward'}"),
                       (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens (patches)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"{mode}, batch {result['config']['batch']}, {result['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CSV_FIELDS = ("label", "model", "engine", "quantize", "tokens", "frames", "batch", "median_s", "min_s",
              "peak_mem_mib", "peak_total_mib", "tokens_per_s", "contended", "skipped")


def csv_table(result: dict) -> str:
    """One line per configuration, torch and onnxruntime rows side by side (spreadsheet-friendly)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in result["results"]:
        spec = r["spec"]
        writer.writerow({"label": label(r), "model": spec["model"], "engine": spec.get("engine", "torch"),
                         "quantize": spec.get("quantize") or "", "tokens": spec["tokens"], "frames": r["frames"],
                         "batch": spec["batch"],
                         **{k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS[7:]}})
    return buffer.getvalue()


def save_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<mode>_<device>.json``, ``.csv``, ``.md`` and ``.png`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['config']['mode']}_{result['config']['device']}"
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md",
             "png": out / f"{stem}.png"}
    atomic_write_text(paths["json"], json.dumps(result, indent=2))
    atomic_write_text(paths["csv"], csv_table(result))
    atomic_write_text(paths["md"], markdown_table(result))
    plot(result, paths["png"])
    return paths
