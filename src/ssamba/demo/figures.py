"""The demo report's figures (PNG): pretraining curves, probe and fine-tuning bars, accuracy by
layer, PCA of embeddings and a confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ssamba.checkpoints.format import atomic_write
from ssamba.demo.official import METHOD as OFFICIAL

# methods in table / chart order (a chart leaves out those a run lacks, e.g. the official weights
# offline); the headline uses the official mean pooling
HEADLINE = ("log-mel stats", "SSAMBA random init", "SSAMBA pretrained", "SSAST pretrained")
CHART = ("log-mel stats", "SSAMBA random init", "SSAMBA pretrained", "SSAMBA pretrained, mean‖std",
         "SSAMBA random init, bands", "SSAMBA pretrained, bands", "SSAST pretrained", OFFICIAL, OFFICIAL + ", bands")
FINETUNE_CHART = ("SSAMBA random init", "SSAMBA pretrained", "SSAMBA random init, fine-tuned",
                  "SSAMBA pretrained, fine-tuned", "SSAST pretrained, fine-tuned", OFFICIAL + ", fine-tuned")
FINETUNE_HEADLINE = ("SSAMBA random init, fine-tuned", "SSAMBA pretrained, fine-tuned", "SSAST pretrained, fine-tuned")
PLOT_TASK_ORDER = ("drum_instrument", "word", "voice_pack", "language")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(runs: dict[str, dict], path: Path) -> Path:
    """Training loss and masked-patch accuracy of each pretraining run against wall-clock minutes."""
    from ssamba.train.metrics_log import read_metrics

    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for model, run in runs.items():
        rows = read_metrics(Path(run["run_dir"]) / "metrics.csv")
        minutes = np.array([r.get("elapsed_s", 0.0) for r in rows]) / 60
        loss = np.array([r["loss"] for r in rows])
        acc = np.array([r.get("acc", np.nan) for r in rows])
        k = max(1, len(rows) // 50)  # moving average over ~2 % of the run
        kernel = np.ones(k) / k
        label = f"{model.upper()} ({len(rows)} steps)"
        for ax, y in ((ax_loss, loss), (ax_acc, acc)):
            line, = ax.plot(minutes, y, alpha=0.25)
            if len(y) >= k:
                ax.plot(minutes[k - 1:], np.convolve(y, kernel, mode="valid"), color=line.get_color(), label=label)
    ax_loss.set(xlabel="minutes of pretraining", ylabel="loss (InfoNCE + 10·MSE)", title="pretraining loss")
    ax_loss.set_yscale("log")
    ax_acc.set(xlabel="minutes of pretraining", ylabel="masked-patch accuracy", title="masked-patch InfoNCE accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def plot_probe_bars(results: Sequence, chance: dict[str, float], path: Path, methods: Sequence[str] = CHART,
                    title: str = "Linear probes on frozen embeddings (held-out groups)") -> Path:
    """Grouped bars: accuracy per task and method, 95 % bootstrap intervals, majority-class line."""
    plt = _plt()
    tasks = list(dict.fromkeys(r.task for r in results))
    methods = [m for m in methods if any(r.method == m for r in results)]
    by = {(r.task, r.method): r for r in results}
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(7, 2.2 * len(tasks)), 4.5))
    for j, method in enumerate(methods):
        xs, ys, err = [], [], [[], []]
        for i, task in enumerate(tasks):
            r = by.get((task, method))
            if r is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(r.accuracy)
            err[0].append(r.accuracy - r.ci_low)
            err[1].append(r.ci_high - r.accuracy)
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=method)
    for i, task in enumerate(tasks):
        ax.hlines(chance[task], i - 0.45, i + 0.45, colors="black", linestyles="dotted",
                  label="majority class" if i == 0 else None)
    ax.set_xticks(range(len(tasks)), labels=tasks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (95 % CI)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def plot_accuracy_by_layer(results: Sequence, depth_results: Sequence, path: Path) -> Path:
    """Probe accuracy against layer (pair) per task, pretrained vs random init SSAMBA."""
    plt = _plt()
    tasks = list(dict.fromkeys(r.task for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for encoder in ("SSAMBA random init", "SSAMBA pretrained"):
            points = sorted((int(r.method.rsplit(" ", 1)[1]), r.accuracy) for r in depth_results
                            if r.task == task and r.method.startswith(encoder + ", layer "))
            last = next((r.accuracy for r in results if r.task == task and r.method == encoder), None)
            if last is not None:
                points.append((len(points), last))
            if points:
                ax.plot([k + 1 for k, _ in points], [a for _, a in points], marker="o", label=encoder)
        ax.set(title=task, xlabel="layer (pair)", ylabel="probe accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of standardised rows."""
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-8)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def plot_embedding_pca(embeddings: dict[str, np.ndarray], labels: Sequence[str], title: str, path: Path) -> Path:
    """One panel per feature set: PCA of the test clips' embeddings, coloured by class."""
    plt = _plt()
    classes = sorted(set(labels))
    colour = {c: plt.get_cmap("tab20")(i % 20) for i, c in enumerate(classes)}
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5.5 * len(embeddings), 5), squeeze=False)
    for ax, (name, x) in zip(axes[0], embeddings.items()):
        xy = pca_2d(x)
        for c in classes:
            sel = np.array([label == c for label in labels])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=colour[c], label=c, alpha=0.8)
        ax.set(title=name, xlabel="PC 1", ylabel="PC 2")
    if len(classes) <= 20:
        axes[0][-1].legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def make_figures(out: Path, runs: dict[str, dict], results: Sequence, tasks: Sequence,
                 plot_embeddings: dict[str, np.ndarray], row_of: dict[Path, int],
                 depth_results: Sequence = ()) -> dict[str, Path]:
    """All PNGs of the report: loss curves, probe and fine-tuning bars, accuracy by layer, PCA and
    confusion matrix of one task."""
    from ssamba.downstream.metrics import confusion_matrix, write_confusion_matrix_png

    chance = {t.name: t.chance for t in tasks}
    images = {"loss_curves": plot_loss_curves(runs, out / "loss_curves.png"),
              "probe_accuracy": plot_probe_bars(results, chance, out / "probe_accuracy.png")}
    if any(r.method in FINETUNE_HEADLINE for r in results):
        images["finetune_accuracy"] = plot_probe_bars(
            results, chance, out / "finetune_accuracy.png", FINETUNE_CHART,
            "Fine-tuned vs probed (held-out groups, same seconds per fine-tuning run)")
    if depth_results:
        images["accuracy_by_layer"] = plot_accuracy_by_layer(results, depth_results, out / "accuracy_by_layer.png")
    task = next((t for name in PLOT_TASK_ORDER for t in tasks if t.name == name), tasks[0])
    rows = np.array([row_of[i.path.resolve()] for i in task.test_items])
    labels = [i.label for i in task.test_items]
    images["embedding_pca"] = plot_embedding_pca(
        {name: x[rows] for name, x in plot_embeddings.items()}, labels,
        f"{task.name}: test clips (held-out {task.group_kind}s), PCA of frozen embeddings", out / "embedding_pca.png")
    chosen = next(r for r in results if r.task == task.name and r.method == "SSAMBA pretrained")
    matrix = confusion_matrix(chosen.predictions, chosen.labels, len(task.classes))
    images["confusion"] = write_confusion_matrix_png(
        matrix, task.classes, out / "confusion_matrix.png",
        title=f"{task.name}, SSAMBA pretrained (acc {chosen.accuracy:.2f})")
    return images
