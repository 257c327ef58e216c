"""The on-disk checkpoint format: a directory with ``config.json`` + ``model.safetensors`` (and
``extra_state.safetensors`` for heads, ``README.md`` the model card), each file written atomically.

This layer knows files, not models: it writes and reads a config mapping and tensors.
``ssamba.models.checkpoint`` builds encoders from them (``ssamba.load``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssamba.errors import CheckpointError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EXTRA_FILE = "extra_state.safetensors"
CARD_FILE = "README.md"
FORMAT_VERSION = 1
TASK_ENCODER_PREFIX = "encoder."   # a Trainer checkpoint holds the task's state: encoder.* + heads


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write via ``write(tmp_path)`` to a temp file in the same directory, then os.replace it into
    place: a reader sees the old file or the new one, never half of one. An OSError without a
    file name (a write on a full disk) is re-raised naming ``path``."""
    atomic_write_all({Path(path): write})


def atomic_write_all(writes: dict[Path, Callable[[str], None]]) -> None:
    """Like :func:`atomic_write` for files that belong together (embeddings and their file list):
    every one is written to a temp file first, and they are renamed into place only when all are
    complete, so a failure leaves the previous set whole, never a new file beside an old one."""
    done: dict[Path, str] = {}
    current = next(iter(writes), None)
    try:
        for current, write in writes.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".tmp", dir=current.parent)
            os.close(fd)
            done[current] = tmp
            write(tmp)
        for current, tmp in done.items():
            os.replace(tmp, current)
    except BaseException as exc:
        for tmp in done.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        named = named_os_error(exc, current)
        if named is exc:
            raise
        raise named from exc


def named_os_error(exc: BaseException, path: str | os.PathLike) -> BaseException:
    """``exc``, or for an OSError that names no file (a failed write()), the same error naming ``path``."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    return exc


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def write_encoder_files(directory: str | os.PathLike, config: dict, state: dict,
                        extra_state: dict | None = None, *, card: str | None = None) -> Path:
    """Write ``config.json`` (the encoder config mapping) and ``model.safetensors`` (and
    ``extra_state.safetensors``, if given) and the model card ``README.md`` (``card``, else the
    encoder's card from ``checkpoints.card.model_card``); the config goes last, so a directory with
    a config always has its weights."""
    from ssamba.checkpoints.card import model_card

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # model_type: what transformers' AutoConfig reads (ssamba.integrations.transformers_adapter)
    meta = {"format": "ssamba-encoder", "format_version": FORMAT_VERSION,
            "model_type": config.get("arch", "ssamba"), "encoder": config}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(_tensors(state), tmp))
    if extra_state:
        atomic_write(directory / EXTRA_FILE, lambda tmp: save_file(_tensors(extra_state), tmp))
    atomic_write_text(directory / CARD_FILE, card if card is not None else model_card(config))
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_encoder_files(directory: str | os.PathLike) -> tuple[dict, dict, dict]:
    """(encoder config mapping, encoder state, extra state) of a checkpoint directory; a Trainer
    checkpoint's ``encoder.*`` weights become the encoder state, its other weights extra state."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{directory}: not a ssamba checkpoint directory (no {path.name})")
    try:
        config = json.loads(config_path.read_text())["encoder"]
        if not isinstance(config, dict):
            raise TypeError("'encoder' is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: invalid encoder config ({exc})") from None
    try:
        state = load_file(weights_path)
        extra = load_file(directory / EXTRA_FILE) if (directory / EXTRA_FILE).is_file() else {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{directory}: unreadable safetensors file ({exc})") from None
    if any(k.startswith(TASK_ENCODER_PREFIX) for k in state):
        extra = {**extra, **{k: v for k, v in state.items() if not k.startswith(TASK_ENCODER_PREFIX)}}
        state = {k[len(TASK_ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(TASK_ENCODER_PREFIX)}
    return config, state, extra


def resolve_run_dir(directory: str | os.PathLike) -> Path:
    """A training run directory stands for its ``checkpoints/best`` (else ``checkpoints/last``)."""
    directory = Path(directory)
    for name in ("best", "last"):
        candidate = directory / "checkpoints" / name
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return directory
