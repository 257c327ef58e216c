"""Self-describing checkpoints: a directory with ``config.json`` + ``model.safetensors``.

``ssamba.load(path, **overrides)`` reads such a directory or an official ``.pth``. Overrides
change the config before the weights are loaded; changing the patch strides or the input size
resizes the stored positional embedding to the new patch grid (centre crop / bilinear, as the
official fine-tuning code does), so e.g. ``load(pth, fstride=10, tstride=10, input_tdim=512)``
gives the official ESC-50 fine-tuning geometry.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ssamba.checkpoints.format import read_encoder_files, resolve_run_dir, write_encoder_files
from ssamba.errors import CheckpointError, ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import AudioEncoder
from ssamba.models.official import load_official_state
from ssamba.nn.patch import resize_pos_embed


def save_pretrained(model: AudioEncoder, directory: str | os.PathLike, extra_state: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and ``extra_state.safetensors`` for heads, if given)."""
    return write_encoder_files(directory, model.config.to_dict(), model.state_dict(), extra_state)


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
    config, state, extra = read_encoder_files(directory)
    try:
        return EncoderConfig.from_dict(config), state, extra
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{Path(directory) / 'config.json'}: invalid encoder config ({exc})") from None


def load_state(path: str | os.PathLike) -> tuple[EncoderConfig, dict, dict]:
    """(config, encoder state, extra state) of a checkpoint directory or an official ``.pth``."""
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


def convert_official(src: str | os.PathLike, dst_dir: str | os.PathLike, **overrides) -> Path:
    """Convert an official ``.pth`` into a self-describing checkpoint directory; returns the directory.

    The encoder is validated by loading it (wrong shapes raise CheckpointError); pretraining or
    fine-tuning heads are kept in ``extra_state.safetensors``.
    """
    config, encoder_state, extra = load_official_state(src)
    model = build_encoder(config, encoder_state, source=str(src), **overrides)
    save_pretrained(model, dst_dir, extra_state=extra)
    return Path(dst_dir)
