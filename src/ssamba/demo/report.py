"""The demo's report: one document rendered twice, as `report.md` and as a self-contained
`report.html` (the figures of ``ssamba.demo.figures`` embedded as base64 PNG).

The document is a list of blocks (heading, paragraph, table, image, code), so both renderings
say exactly the same thing.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from ssamba.checkpoints.format import atomic_write_text
from ssamba.demo.figures import FINETUNE_HEADLINE, HEADLINE
from ssamba.demo.finetune import FINETUNED
from ssamba.demo.official import METHOD as OFFICIAL


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple:
    return ("table", list(header), [[str(c) for c in row] for row in rows])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _apart(a, b) -> int:
    """+1 when a's interval lies above b's, -1 below, 0 when they overlap."""
    return 1 if a.ci_low > b.ci_high else -1 if a.ci_high < b.ci_low else 0


def verdict(results: Sequence, tasks: Sequence) -> tuple[list[str], dict[str, int]]:
    """Sentences comparing pretrained SSAMBA (official mean) with random init and log-mel per task,
    counting a win only when the 95 % intervals do not overlap."""
    by = {(r.task, r.method): r for r in results}
    lines, wins = [], {"random init": 0, "log-mel stats": 0}
    for t in tasks:
        ours = by[(t.name, "SSAMBA pretrained")]
        parts = []
        for key, method in (("random init", "SSAMBA random init"), ("log-mel stats", "log-mel stats")):
            other = by[(t.name, method)]
            side = _apart(ours, other)
            wins[key] += int(side > 0)
            word = {1: "better than", -1: "worse than", 0: "not distinguishable from"}[side]
            parts.append(f"{word} {key} ({_pct(ours.accuracy)} vs {_pct(other.accuracy)} %)")
        lines.append(f"**{t.name}**: pretrained SSAMBA is " + "; ".join(parts) + ".")
    return lines, wins


def bands_sentence(results: Sequence, tasks: Sequence) -> str | None:
    """Pretrained vs random-init SSAMBA when both are pooled by frequency band (the spectrum kept),
    counted like the verdict; None when the run has no bands rows."""
    by = {(r.task, r.method): r for r in results}
    methods = ("SSAMBA pretrained, bands", "SSAMBA random init, bands")
    pairs = [(t.name, *(by[(t.name, m)] for m in methods)) for t in tasks if all((t.name, m) in by for m in methods)]
    if not pairs:
        return None
    ahead = sum(ours.accuracy > other.accuracy for _, ours, other in pairs)
    apart = sum(_apart(ours, other) > 0 for _, ours, other in pairs)
    behind = sum(_apart(ours, other) < 0 for _, ours, other in pairs)
    numbers = ", ".join(f"{task} {_pct(ours.accuracy)} vs {_pct(other.accuracy)}" for task, ours, other in pairs)
    return (f"With the bands pooling, which keeps where in the spectrum the energy sits, pretrained SSAMBA is ahead "
            f"of its random initialisation on {ahead} of {len(pairs)} tasks, {apart} with intervals apart"
            + (f", and behind with intervals apart on {behind}" if behind else "") + f" ({numbers} %).")


SSAMBA_PRETRAINED = ("SSAMBA pretrained", "SSAMBA pretrained, mean‖std", "SSAMBA pretrained, bands",
                     "SSAMBA pretrained, fine-tuned")


def _best(by: dict, task: str, methods: Sequence[str]):
    """The most accurate of `methods` on `task` (those that ran)."""
    return max((by[(task, m)] for m in methods if (task, m) in by), key=lambda r: r.accuracy)


def _count(pairs: Sequence[tuple]) -> tuple[int, int]:
    """(ahead, ahead with 95 % intervals apart) over (ours, theirs) result pairs."""
    return sum(a.accuracy > b.accuracy for a, b in pairs), sum(_apart(a, b) > 0 for a, b in pairs)


def goals(results: Sequence, tasks: Sequence) -> list[list[str]]:
    """The demo's goals, each as [goal, needed, reached, "met" / "not met"], so a shortfall is
    stated plainly. Counts scale with the number of tasks (3 of 4 -> 3/4 of them, rounded up).
    Fine-tuning goals are left out when the stage did not run."""
    by = {(r.task, r.method): r for r in results}
    names = [t.name for t in tasks]
    n = len(names)
    most, half = -(-3 * n // 4), -(-n // 2)
    rows = []

    def add(goal: str, needed: str, ahead: int, apart: int, met: bool) -> None:
        rows.append([goal, needed, f"ahead on {ahead} of {n}, {apart} with intervals apart", "met" if met else "not met"])

    finetuned = all((t, m) in by for t in names for m in FINETUNE_HEADLINE)
    if finetuned:
        ahead, apart = _count([(by[(t, "SSAMBA pretrained, fine-tuned")], by[(t, "SSAMBA random init, fine-tuned")])
                               for t in names])
        add("fine-tuned pretrained SSAMBA beats fine-tuned random-init SSAMBA",
            f"ahead on {most}, intervals apart on {half}", ahead, apart, ahead >= most and apart >= half)
    ours = "SSAMBA pretrained, fine-tuned" if finetuned else "SSAMBA pretrained"
    theirs = "SSAST pretrained, fine-tuned" if finetuned else "SSAST pretrained"
    ahead, apart = _count([(by[(t, ours)], by[(t, theirs)]) for t in names])
    add(f"pretrained SSAMBA beats pretrained SSAST, same minutes ({'fine-tuned' if finetuned else 'probed'})",
        f"ahead on {most}", ahead, apart, ahead >= most)
    ahead, apart = _count([(_best(by, t, SSAMBA_PRETRAINED), by[(t, "log-mel stats")]) for t in names])
    add("best pretrained SSAMBA result per task (probe or fine-tuned) beats log-mel statistics",
        f"intervals apart on {half}", ahead, apart, apart >= half)
    ahead, apart = _count([(by[(t, "SSAMBA pretrained")], by[(t, "SSAMBA random init")]) for t in names])
    add("probe: pretrained SSAMBA beats its random initialisation (official mean pooling)",
        f"intervals apart on {half}", ahead, apart, apart >= half)
    return rows


def _head_words(config) -> str:
    """The fine-tuning head in words: its pooling and how it starts."""
    pooling = {"mean": "mean", "mean_std": "mean‖std", "bands": "per-band time means"}[config.finetune_pooling]
    start = "starting as a linear probe (LP-FT)" if config.finetune_head_init == "probe" else "starting at random"
    return f"head on the {pooling} of the last layer, {start}"


def build_document(config, corpus: dict, tasks: Sequence, runs: dict[str, dict], results: Sequence,
                   timings: dict[str, float], environment: dict, images: dict[str, Path],
                   depth_results: Sequence = (), finetune_runs: Sequence = (), official=None) -> list[tuple]:
    """The report as blocks: ("h", level, text), ("p", text), ("table", header, rows), ("img", alt, path), ("code", text)."""
    doc: list[tuple] = [("h", 1, "ssamba demo: self-supervised pretraining on real audio, on a CPU")]
    total = timings.get("total")
    doc.append(("p", f"SSAMBA-tiny and SSAST-tiny were pretrained from scratch, {config.minutes:g} minutes of wall clock "
                     f"each, on {corpus['pretraining_clips']} unlabelled clips ({corpus['hours']} h in the corpus), "
                     f"then frozen and compared by linear probes on {len(tasks)} tasks whose test items come from "
                     f"groups never seen in training. Whole run: {total / 60:.1f} min" if total else
                     "Whole run: see timings below."))
    if config.quick:
        doc.append(("p", "**Quick mode**: tiny models, seconds of pretraining and a subset of the corpus. "
                         "The numbers below only show that the pipeline works, not what pretraining buys."))
    lines, wins = verdict(results, tasks)
    n = len(tasks)
    doc.append(("h", 2, "Verdict"))
    doc.append(("p", f"With the official embedding (mean of the last layer's tokens), pretrained SSAMBA is clearly "
                     f"better (95 % intervals apart) than its own random initialisation on {wins['random init']} of "
                     f"{n} tasks and than log-mel statistics on {wins['log-mel stats']} of {n} tasks."))
    for line in lines:
        doc.append(("p", line))
    if (bands := bands_sentence(results, tasks)) is not None:
        doc.append(("p", bands))
    if config.exclude_test_audio:
        doc.append(("p", "Clean protocol: no test clip of any task was in the pretraining audio."))
    doc.append(("h", 2, "Goals"))
    doc.append(("p", "What the demo sets out to show, and whether this run shows it (a win counts only with "
                     "the 95 % intervals apart where the goal says so)."))
    doc.append(_table(["goal", "needed", "reached", ""], goals(results, tasks)))

    doc.append(("h", 2, "Results"))
    if official is not None:
        doc.append(("p", official.sentence()))
    by = {(r.task, r.method): r for r in results}
    methods = {r.method for r in results}
    headline = [m for m in (*HEADLINE, OFFICIAL) if m in methods]
    summary_rows = []
    for t in tasks:
        summary_rows.append([t.name, _pct(t.chance)] + [_pct(by[(t.name, m)].accuracy) if (t.name, m) in by else ""
                                                         for m in headline])
    doc.append(("p", "Test accuracy (%), official mean pooling; majority = always answering the most common test class."))
    doc.append(_table(["task", "majority"] + headline, summary_rows))
    for t in tasks:
        s = t.summary()
        doc.append(("h", 3, f"{t.name}: {t.description}"))
        doc.append(("p", f"{s['classes']} classes; train {s['train_items']} clips from {s['train_groups']} "
                         f"{t.group_kind}s, test {s['test_items']} clips from {s['test_groups']} other "
                         f"{t.group_kind}s; majority-class accuracy {_pct(t.chance)} %."))
        rows = [[r.method, _pct(r.accuracy), f"{_pct(r.ci_low)} – {_pct(r.ci_high)}", _pct(r.macro_f1), r.dim]
                for r in results if r.task == t.name]
        doc.append(_table(["method", "accuracy %", "95 % CI", "macro-F1 %", "dim"], rows))
    doc.append(("img", "probe accuracy per task", images["probe_accuracy"]))
    if "finetune_accuracy" in images:
        doc.append(("h", 2, "Fine-tuning"))
        doc.append(("p", f"Each encoder fine-tuned end to end on each task with one recipe and the same wall clock "
                         f"({config.finetune_seconds:g} s per run; crops of {config.finetune_frames} frames, "
                         f"lr {config.finetune_lr:g}, head lr x{config.finetune_recipe().head_lr_mult:g}, "
                         f"SpecAugment, {_head_words(config)}), one seed; test accuracy with the same bootstrap "
                         f"interval."))
        ft_headline = [m for m in (*FINETUNE_HEADLINE, OFFICIAL + FINETUNED) if m in methods]
        ft_rows = [[t.name, _pct(t.chance)] + [_pct(by[(t.name, m)].accuracy) if (t.name, m) in by else ""
                                               for m in ft_headline] for t in tasks]
        doc.append(_table(["task", "majority"] + ft_headline, ft_rows))
        doc.append(_table(["task", "method", "steps", "epochs", "last loss", "seconds"],
                          [[r["task"], r["method"], r["steps"], r["epochs"], f"{r['last_loss']:.3f}", r["seconds"]]
                           for r in finetune_runs]))
        doc.append(("img", "fine-tuned vs probed accuracy", images["finetune_accuracy"]))
    if "accuracy_by_layer" in images:
        doc.append(("h", 2, "Probe accuracy against depth"))
        doc.append(("p", "The official embedding pools the last layer; here every SSAMBA layer pair is probed "
                         "(`Embedder(layers=k)`, `ssamba embed --layers k`)."))
        doc.append(("img", "probe accuracy by layer", images["accuracy_by_layer"]))
    doc.append(("p", "Intervals: percentile bootstrap over test clips (1000 resamples). "
                     "\"mean‖std\" rows pool the encoder's tokens by mean and standard deviation, concatenated; "
                     "\"bands\" rows average each frequency band's tokens over time and concatenate the bands, "
                     "so the embedding keeps where in the spectrum the energy sits (as M2D pools its patches). "
                     "Both are options (`ssamba embed --pooling`); the official embedding is the mean."))

    doc.append(("h", 2, "Pretraining"))
    rows = []
    for model, run in runs.items():
        m = run["metrics"]
        rows.append([model.upper(), run["run_config"]["model"]["name"], run["run_config"]["model"]["overrides"]["depth"],
                     f"{run['encoder_parameters'] / 1e6:.2f} M", run["steps"], f"{timings.get('pretrain ' + model, 0) / 60:.1f}",
                     f"{m.get('loss', float('nan')):.3f}", f"{m.get('acc', float('nan')):.3f}", run["encoder_dir"]])
    doc.append(_table(["run", "preset", "depth", "parameters", "steps", "minutes", "last loss", "last masked acc",
                       "encoder (ssamba.load)"], rows))
    doc.append(("img", "pretraining loss curves", images["loss_curves"]))
    doc.append(("p", "Reuse a pretrained encoder: `ssamba embed --model " + runs["ssamba"]["encoder_dir"] +
                     " some.wav` or `ssamba.load(\"" + runs["ssamba"]["encoder_dir"] + "\")`."))

    doc.append(("h", 2, "Embeddings and errors of one task"))
    doc.append(("img", "PCA of test embeddings", images["embedding_pca"]))
    doc.append(("img", "confusion matrix", images["confusion"]))

    doc.append(("h", 2, "Timings"))
    doc.append(_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]))
    doc.append(("p", f"Machine: {environment['cpus']} CPUs, torch {environment['torch']}, "
                     f"{environment['threads']} threads; stages ran one after another."))

    doc.append(("h", 2, "Corpus"))
    doc.append(("p", f"{corpus['files']} files, {corpus['hours']} h, under `{corpus['root']}`; "
                     f"{corpus['pretraining_clips']} clips used for pretraining (each cut to its first "
                     f"{config.max_clip_seconds:g} s), {corpus['probe_clips']} distinct clips in the probe tasks; "
                     f"{corpus['left_out_too_short']} clips shorter than 30 ms left out."))
    doc.append(_table(["source", "files", "hours", "mean seconds"],
                      [[k, int(v["files"]), v["hours"], v["mean_seconds"]] for k, v in corpus["by_source"].items()]))
    if corpus["packages"]:
        doc.append(_table(["package", "version", "sha256"],
                          [[p["name"], p["version"], p["sha256"][:16] + "…"] for p in corpus["packages"]]))

    doc.append(("h", 2, "Exactly what was run"))
    doc.append(("p", "Demo settings (`ssamba.demo.DemoConfig`):"))
    doc.append(("code", json.dumps(asdict(config), indent=1)))
    for model, run in runs.items():
        doc.append(("p", f"{model.upper()} pretraining run config (also in `{run['run_dir']}/checkpoints/last/config.json`):"))
        doc.append(("code", json.dumps(run["run_config"], indent=1)))
    doc.append(("p", "Task definitions (held-out groups, class counts, what was dropped):"))
    doc.append(("code", json.dumps([t.summary() for t in tasks], indent=1)))
    return doc


def render_markdown(doc: list[tuple], out: Path) -> str:
    parts = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            parts.append("\n".join(lines))
        elif kind == "img":
            parts.append(f"![{block[1]}]({Path(block[2]).relative_to(out).as_posix()})")
        elif kind == "code":
            parts.append("```\n" + block[1] + "\n```")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escape, then the two inline marks the document uses: **bold** and `code`."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def render_html(doc: list[tuple]) -> str:
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[2]).read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}"></p>')
        elif kind == "code":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ssamba demo report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(out: Path, **parts: Any) -> dict[str, Path]:
    """Write `report.md` and `report.html` in `out` from `build_document(**parts)`."""
    doc = build_document(**parts)
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, render_markdown(doc, out))
    atomic_write_text(page, render_html(doc))
    return {"md": md, "html": page}
