"""The training run's metrics log: ``metrics.csv`` (one row per optimizer step), ``eval.csv``,
TensorBoard scalars when it is installed, and the loss-curve PNG drawn from the CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ssamba.checkpoints.format import atomic_write_text

METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.csv"


class MetricsLog:
    """Appends rows to ``out_dir/metrics.csv`` (columns fixed by the first row). When a run is
    resumed from ``resume_step``, rows written after that step are dropped first, so the file
    reads as if the run had never stopped."""

    def __init__(self, out_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.fields: list[str] | None = None
        if resume_step is not None and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if _complete(r) and int(r["step"]) <= resume_step]
            if self.fields:  # rewritten atomically: a full disk here leaves the old file
                out = io.StringIO()
                w = csv.DictWriter(out, self.fields)
                w.writeheader()
                w.writerows(rows)
                atomic_write_text(self.path, out.getvalue())
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row.keys())
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(
                {k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _complete(row: dict) -> bool:
    """A whole row: a write cut short (a full disk, a kill) leaves a last row with missing fields."""
    if None in row or any(v is None for v in row.values()):
        return False
    try:
        int(row["step"])
    except (KeyError, ValueError):
        return False
    return True


def append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, list(row.keys()))
        if new:
            w.writeheader()
        w.writerow(row)


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as dicts of floats (``step`` as int)."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        row = {k: float(v) for k, v in r.items() if v not in ("", None)}
        row["step"] = int(row["step"])
        out.append(row)
    return out


def plot_metrics(metrics_csv: str | Path, png: str | Path) -> Path | None:
    """Loss (and masked-patch accuracy when logged) against step, saved as a PNG."""
    metrics_csv = Path(metrics_csv)
    if not metrics_csv.exists():
        return None
    rows = read_metrics(metrics_csv)
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in rows], label="loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if "acc" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r["acc"] for r in rows], label="masked-patch acc", color="tab:orange", alpha=0.7)
        ax2.set_ylabel("masked-patch accuracy")
    ax.set_title(metrics_csv.parent.name)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)
