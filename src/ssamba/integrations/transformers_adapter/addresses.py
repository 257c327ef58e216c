"""ssamba's Hub addresses for the adapter's ``from_pretrained``: ``hf://OWNER/REPO[@REV][/FOLDER]``
becomes transformers' own arguments (repo id, ``revision``, ``subfolder``), so every file of the
folder (``task.json``, ``head.safetensors`` too) comes through transformers' Hub cache."""

from __future__ import annotations

from ssamba.checkpoints.hub import is_address, parse_address
from ssamba.errors import CheckpointError


def hub_arguments(source, kwargs: dict) -> tuple[object, dict]:
    """(name or path, keyword arguments) for transformers; local paths and repo ids pass unchanged."""
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
