"""What the adapter's ``from_pretrained`` accepts beyond transformers' names: ssamba's Hub
addresses (``hf://OWNER/REPO[@REV][/FOLDER]`` becomes transformers' repo id, ``revision`` and
``subfolder``, so every file of the folder, ``task.json`` and ``head.safetensors`` too, comes
through transformers' Hub cache) and ssamba run folders (a fine-tuning run's ``model/``, a
training run's ``checkpoints/best``, else ``last``, as ``ssamba.load`` takes them)."""

from __future__ import annotations

import os
from pathlib import Path

from ssamba.checkpoints.format import CONFIG_FILE, resolve_run_dir
from ssamba.checkpoints.hub import is_address, parse_address
from ssamba.errors import CheckpointError


def hub_arguments(source, kwargs: dict) -> tuple[object, dict]:
    """(name or path, keyword arguments) for transformers; repo ids and checkpoint folders pass unchanged."""
    if isinstance(source, (str, os.PathLike)) and not is_address(source) and Path(source).is_dir():
        folder = Path(source)
        if not (folder / CONFIG_FILE).is_file() and (folder / "model" / CONFIG_FILE).is_file():
            folder = folder / "model"                       # a fine-tuning run: its final model
        return str(resolve_run_dir(folder)), kwargs
    if not is_address(source):
        return source, kwargs
    address = parse_address(source)
    if address.is_file:
        raise CheckpointError(f"{source}: an official .pth; convert it first (`ssamba convert {source} DIR`) "
                              "and load the folder")
    extra = dict(kwargs)
    if address.revision:
        extra.setdefault("revision", address.revision)
    if address.path:
        extra.setdefault("subfolder", address.path)
    return address.repo_id, extra
