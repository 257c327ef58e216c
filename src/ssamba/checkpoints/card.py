"""Model cards: the ``README.md`` a checkpoint folder carries, with Hugging Face Hub metadata.

The metadata block is written by huggingface_hub's ``ModelCardData`` (library, tags, pipeline
tag, licence); the body states the encoder's config and, for a training run, its data, steps,
losses and the evaluation/fine-tuning results the run recorded. ``run_record`` reads those from
a run folder's files (``metrics.csv``, ``eval.csv``, ``results.json``, the checkpoint's
``config.json``) without importing the training code, so this stays in the on-disk layer.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

PAPER = "arXiv:2405.11831"
LICENSE = "bsd-3-clause"
LOSS_COLUMNS = ("loss", "nce", "mse", "acc")
_CONFIG_ROWS = ("arch", "embed_dim", "depth", "num_heads", "d_state", "expand", "fshape", "tshape", "fstride",
                "tstride", "input_fdim", "input_tdim", "num_cls_tokens", "features")


def model_card(config: dict[str, Any], run: dict[str, Any] | None = None, task: dict[str, Any] | None = None,
               repo_id: str | None = None, base_model: str | None = None) -> str:
    """README.md text for a checkpoint folder of an encoder with ``config`` (an EncoderConfig mapping).

    ``run``: what ``run_record`` read from its training run; ``task``: a fine-tuned model's
    ``task.json`` (then the pipeline tag is audio-classification); ``repo_id`` names the repo in
    the usage lines; ``base_model``: the Hub repo the run started from, if any.
    """
    from huggingface_hub import ModelCard, ModelCardData

    arch = config.get("arch", "ssamba")
    tags = ["audio", "mamba" if arch == "ssamba" else "transformer", "self-supervised", PAPER.lower(), arch]
    data = ModelCardData(library_name="ssamba", license=LICENSE, tags=tags,
                         pipeline_tag="audio-classification" if task else "feature-extraction",
                         base_model=base_model)
    body = [f"# {'SSAMBA' if arch == 'ssamba' else 'SSAST'} audio encoder"
            f"{' fine-tuned on ' + str(task.get('dataset')) if task else ''}", "",
            _intro(arch), "", "## Use", "", _usage(repo_id, task), "", "## Config", "",
            "| setting | value |", "|---|---|"]
    skip = ("num_heads",) if arch == "ssamba" else ("d_state", "expand")
    body += [f"| {key} | {_cell(config[key])} |" for key in _CONFIG_ROWS if key in config and key not in skip]
    if run:
        body += ["", *_run_section(run)]
    body += ["", "## Citation", "", "SSAMBA: Self-Supervised Audio Representation Learning with Mamba State Space "
             f"Model (Shams, Dindar, Jiang, Mesgarani; {PAPER}, IEEE SLT 2024)."]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))


def _intro(arch: str) -> str:
    mixer = "bidirectional Mamba (selective state space) layers" if arch == "ssamba" else "transformer layers"
    return (f"An audio encoder of {mixer} over patches of a 128-bin Kaldi log-mel spectrogram ({PAPER}; "
            "official code: https://github.com/SiavashShams/ssamba), stored by the `ssamba` Python package as "
            "`config.json` + `model.safetensors`. Its embedding is the mean of the non-CLS tokens after the "
            "final norm.")


def _usage(repo_id: str | None, task: dict | None) -> str:
    where = f"hf://{repo_id}" if repo_id else "path/to/this/folder"
    lines = ["```python", "import ssamba", "from ssamba.inference import embed", "",
             f'encoder = ssamba.load("{where}")', 'embeddings = embed(["clip.wav"], encoder)  # (1, D)', "```", "",
             f"or `ssamba embed clip.wav --model {where} --out emb.npy`."]
    if task:
        lines += ["", f"The classification head (`head.safetensors`, classes in `task.json`: "
                  f"{len(task.get('class_names', []))}) loads with "
                  "`ssamba.downstream.finetune.load_finetuned(folder)`."]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _run_section(run: dict[str, Any]) -> list[str]:
    lines = ["## Training run", ""]
    if run.get("data"):
        lines.append(f"- data: {_cell(run['data'])}")
    if run.get("init"):
        lines.append(f"- initialised from: {run['init']}")
    if run.get("steps") is not None:
        lines.append(f"- optimizer steps: {run['steps']}")
    for key in ("pretrain", "finetune"):
        if run.get(key):
            lines.append(f"- {key}: {_cell(run[key])}")
    if run.get("losses"):
        lines.append("- last training step: " + ", ".join(f"{k} {_cell(v)}" for k, v in run["losses"].items()))
    if run.get("eval"):
        lines.append("- last validation: " + ", ".join(f"{k} {_cell(v)}" for k, v in run["eval"].items()))
    results = run.get("results")
    if results:
        lines += ["", f"### Results on {results.get('dataset', 'the test data')}", "", "| run | metric | value |",
                  "|---|---|---|"]
        for name, metrics in results.get("runs", {}).items():
            lines += [f"| {name} | {k} | {_cell(v)} |" for k, v in metrics.items() if _number(v)]
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _last_row(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step")]
    if not rows:
        return None
    return {k: _parse(v) for k, v in rows[-1].items() if v not in (None, "")}


def _parse(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _json(path: Path) -> dict[str, Any]:
    """A run file's mapping; an unreadable one only leaves its part out of the card."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _run_folder(checkpoint_dir: Path) -> tuple[Path | None, Path | None]:
    """(training folder with metrics.csv, folder with results.json) among the checkpoint's ancestors:
    a Trainer checkpoint is RUN/checkpoints/step-N, a fine-tuned model RUN/model or RUN/foldK/model."""
    train_dir = results_dir = None
    for folder in [checkpoint_dir, *list(checkpoint_dir.parents)[:3]]:
        if train_dir is None and (folder / "metrics.csv").is_file():
            train_dir = folder
        if results_dir is None and (folder / "results.json").is_file():
            results_dir = folder
    return train_dir, results_dir


def run_record(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What a training run recorded about the checkpoint in ``checkpoint_dir`` (None outside a run):
    data, steps, the last logged losses and validation metrics, and fine-tuning/probe results."""
    checkpoint_dir = Path(checkpoint_dir).resolve()
    train_dir, results_dir = _run_folder(checkpoint_dir)
    if train_dir is None and results_dir is None:
        return None
    record: dict[str, Any] = {}
    config_path = checkpoint_dir / "config.json"
    if train_dir is not None and not config_path.is_file():
        config_path = train_dir / "checkpoints" / "last" / "config.json"
    if config_path.is_file():
        saved = _json(config_path)
        data = saved.get("data")
        record["data"] = data.get("source") if isinstance(data, dict) else saved.get("dataset", data)
        record.update({k: saved[k] for k in ("pretrain", "finetune", "init") if saved.get(k)})
    if train_dir is not None:
        last = _last_row(train_dir / "metrics.csv") or {}
        record["steps"] = last.get("step")
        record["losses"] = {k: last[k] for k in LOSS_COLUMNS if k in last}
        evaluation = _last_row(train_dir / "eval.csv")
        if evaluation:
            record["eval"] = {k: v for k, v in evaluation.items() if k != "epoch"}
    results = _json(results_dir / "results.json") if results_dir is not None else {}
    if isinstance(results.get("runs"), dict):   # a fine-tuning/probe run's results
        runs = dict(results["runs"])
        if results.get("aggregate"):
            runs["mean"] = {k: v.get("mean") if isinstance(v, dict) else v for k, v in results["aggregate"].items()}
        record["results"] = {"dataset": results.get("dataset"), "runs": runs}
        record.setdefault("init", results.get("init"))
        record.setdefault("data", results.get("dataset"))
    return {k: v for k, v in record.items() if v not in (None, {}, "")}
