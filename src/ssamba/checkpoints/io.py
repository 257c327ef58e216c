"""Self-describing checkpoints: a directory with ``config.json`` + ``model.safetensors``.

``ssamba.load(path, **overrides)`` reads such a directory or an official ``.pth``. Overrides
change the config before the weights are loaded; changing the patch strides or the input size
resizes the stored positional embedding to the new patch grid (centre crop / bilinear, as the
official fine-tuning code does), so e.g. ``load(pth, fstride=10, tstride=10, input_tdim=512)``
gives the official ESC-50 fine-tuning geometry.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssamba.errors import CheckpointError, ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import AudioEncoder
from ssamba.nn.patch import resize_pos_embed

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EXTRA_FILE = "extra_state.safetensors"
FORMAT_VERSION = 1


TASK_ENCODER_PREFIX = "encoder."


def _atomic_write(path: Path, write) -> None:
    """Write via ``write(tmp_path)`` to a temp file in the same directory, then os.replace it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_pretrained(model: AudioEncoder, directory: str | os.PathLike, extra_state: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``extra_state.safetensors`` for heads, if given)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": "ssamba-encoder", "format_version": FORMAT_VERSION, "encoder": model.config.to_dict()}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(_tensors(model.state_dict()), tmp))
    if extra_state:
        _atomic_write(directory / EXTRA_FILE, lambda tmp: save_file(_tensors(extra_state), tmp))
    _atomic_write(directory / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
    return directory


def _summarise(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def load_encoder_state(model: AudioEncoder, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``model``; any missing, unexpected or mis-shaped key is a CheckpointError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                        for k in set(own) & set(state) if state[k].shape != own[k].shape)
    problems = []
    if mismatched:
        problems.append(f"mismatched shapes (checkpoint vs model) {_summarise(mismatched)}")
    if missing:
        problems.append(f"missing keys {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_summarise(unexpected)}")
    if problems:
        raise CheckpointError(f"{source}: does not fit a {model.config.arch} encoder: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def adapt_state(config: EncoderConfig, state: dict, overrides: dict, source: str) -> tuple[EncoderConfig, dict]:
    """Apply config overrides; a new patch grid gets the positional embedding resized to it."""
    try:
        new = config.replace(**overrides)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{source}: cannot apply overrides ({exc})") from None
    if (new.fshape, new.tshape, new.embed_dim) != (config.fshape, config.tshape, config.embed_dim):
        raise CheckpointError(f"{source}: patch shape and width are fixed by the weights; "
                              "override only strides, input size and run-time options")
    if new.grid != config.grid and "pos_embed" in state:
        n = config.num_cls_tokens
        pos = state["pos_embed"]
        if pos.shape[1] == n + config.num_patches:
            state = dict(state)
            state["pos_embed"] = torch.cat([pos[:, :n], resize_pos_embed(pos[:, n:], config.grid, new.grid)], dim=1)
    return new, state


def build_encoder(config: EncoderConfig, state: dict, source: str, **overrides) -> AudioEncoder:
    """Model of ``config`` (with ``overrides``) holding the weights in ``state``, in eval mode."""
    config, state = adapt_state(config, state, overrides, source)
    model = AudioEncoder.from_config(config)
    load_encoder_state(model, state, source)
    return model.eval()


def read_checkpoint_dir(directory: str | os.PathLike) -> tuple[EncoderConfig, dict, dict]:
    """(config, encoder state, extra state) of a directory written by ``save_pretrained``."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{directory}: not a ssamba checkpoint directory (no {path.name})")
    try:
        meta = json.loads(config_path.read_text())
        config = EncoderConfig.from_dict(meta["encoder"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{config_path}: invalid encoder config ({exc})") from None
    try:
        state = load_file(weights_path)
        extra = load_file(directory / EXTRA_FILE) if (directory / EXTRA_FILE).is_file() else {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{directory}: unreadable safetensors file ({exc})") from None
    if any(k.startswith(TASK_ENCODER_PREFIX) for k in state):  # a Trainer checkpoint: encoder.* + heads
        extra = {**extra, **{k: v for k, v in state.items() if not k.startswith(TASK_ENCODER_PREFIX)}}
        state = {k[len(TASK_ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(TASK_ENCODER_PREFIX)}
    return config, state, extra


def resolve_run_dir(directory: Path) -> Path:
    """A training run directory stands for its ``checkpoints/best`` (else ``checkpoints/last``)."""
    for name in ("best", "last"):
        candidate = directory / "checkpoints" / name
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return directory


def load_state(path: str | os.PathLike) -> tuple[EncoderConfig, dict, dict]:
    """(config, encoder state, extra state) of a checkpoint directory or an official ``.pth``."""
    from ssamba.checkpoints.convert import load_official_state
    path = Path(path)
    if path.is_dir():
        return read_checkpoint_dir(resolve_run_dir(path))
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    return load_official_state(path)


def load(path: str | os.PathLike, **overrides) -> AudioEncoder:
    """Load an encoder (eval mode) from a ``save_pretrained`` directory or an official SSAMBA/SSAST ``.pth``.

    ``overrides``: EncoderConfig fields to change, e.g. ``scan_backend="ref"``, ``attention="naive"``,
    or a new geometry ``fstride=10, tstride=10, input_tdim=512`` (positional embedding resized).
    """
    config, state, _ = load_state(path)
    return build_encoder(config, state, source=str(path), **overrides)
