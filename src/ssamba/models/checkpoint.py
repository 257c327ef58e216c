"""Self-describing checkpoints: a directory with ``config.json`` + ``model.safetensors``.

``ssamba.load(path, **overrides)`` reads such a directory or an official ``.pth``. Overrides
change the config before the weights are loaded; changing the patch strides or the input size
resizes the stored positional embedding to the new patch grid (centre crop / bilinear, as the
official fine-tuning code does), so e.g. ``load(pth, fstride=10, tstride=10, input_tdim=512)``
gives the official ESC-50 fine-tuning geometry.

Every ``path`` here may also be a Hub address (``hf://OWNER/REPO[@REV][/FILE.pth]`` or
``official:ssamba_tiny_400``, see ``ssamba.checkpoints.hub``): it is resolved to a file in the
Hugging Face cache once, in ``local_source``, and errors name the address, not the cache path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ssamba.checkpoints import hub
from ssamba.checkpoints.card import model_card, run_record
from ssamba.checkpoints.format import CONFIG_FILE, read_encoder_files, resolve_run_dir, write_encoder_files
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


@contextmanager
def local_source(path: str | os.PathLike, local_files_only: bool = False):
    """Yield the local path of ``path`` (a Hub address is fetched through the Hugging Face cache, or
    only looked up there with ``local_files_only``); a CheckpointError raised inside names the
    address instead of the cached file."""
    if not hub.is_address(path):
        yield Path(path)
        return
    local = hub.resolve(str(path), local_files_only=local_files_only)
    try:
        yield local
    except CheckpointError as exc:
        raise CheckpointError(str(exc).replace(str(local), str(path))) from None


def load_state(path: str | os.PathLike, local_files_only: bool = False) -> tuple[EncoderConfig, dict, dict]:
    """(config, encoder state, extra state) of a checkpoint directory, an official ``.pth`` or a Hub address."""
    with local_source(path, local_files_only) as local:
        if local.is_dir():
            return read_checkpoint_dir(resolve_run_dir(local))
        if not local.exists():
            raise CheckpointError(f"{local}: no such checkpoint file or directory")
        return load_official_state(local)


def load(path: str | os.PathLike, *, local_files_only: bool = False, **overrides) -> AudioEncoder:
    """Load an encoder (eval mode) from a ``save_pretrained`` directory, an official SSAMBA/SSAST ``.pth``
    or a Hub address (``hf://OWNER/REPO``, ``hf://OWNER/REPO/FILE.pth``, ``official:ssamba_tiny_400``).

    ``overrides``: EncoderConfig fields to change, e.g. ``scan_backend="ref"``, ``attention="naive"``,
    or a new geometry ``fstride=10, tstride=10, input_tdim=512`` (positional embedding resized).
    ``local_files_only``: a Hub address is served from the Hugging Face cache only (no request).
    """
    config, state, _ = load_state(path, local_files_only)
    return build_encoder(config, state, source=str(path), **overrides)


def convert_official(src: str | os.PathLike, dst_dir: str | os.PathLike, **overrides) -> Path:
    """Convert an official ``.pth`` (a path or a Hub address) into a self-describing checkpoint
    directory; returns the directory.

    The encoder is validated by loading it (wrong shapes raise CheckpointError); pretraining or
    fine-tuning heads are kept in ``extra_state.safetensors``.
    """
    with local_source(src) as local:
        config, encoder_state, extra = load_official_state(local)
    model = build_encoder(config, encoder_state, source=str(src), **overrides)
    save_pretrained(model, dst_dir, extra_state=extra)
    return Path(dst_dir)


# ----------------------------------------------------------------------------- publishing

FINETUNED_FILES = ("head.safetensors", "task.json")   # a fine-tuned model folder (downstream.finetune)


def checkpoint_folder(source: str | os.PathLike) -> Path:
    """The checkpoint folder a local path names: a training run's ``checkpoints/best`` (else ``last``),
    a fine-tuning run's ``model`` folder, or the folder itself."""
    source = Path(source)
    if (source / "model" / CONFIG_FILE).is_file():
        return source / "model"
    folds = sorted(p.parent.parent.name for p in source.glob("fold*/model/" + CONFIG_FILE))
    if folds and not (source / "checkpoints").is_dir():
        raise CheckpointError(f"{source}: a fine-tuning run with one model per fold ({', '.join(folds)}); "
                              f"push one of them, e.g. {source / folds[0] / 'model'}")
    return resolve_run_dir(source)


def stage_for_hub(source, folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write into ``folder`` what a Hub repo of ``source`` holds: config.json, model.safetensors
    (+ extra_state, + a fine-tuned head and task.json) and README.md, the model card with the run's
    record. ``source``: a checkpoint folder, a run folder, an official .pth or an address."""
    local = Path(source) if not hub.is_address(source) else None
    checkpoint = checkpoint_folder(local) if local is not None and local.is_dir() else None
    config, state, extra = load_state(checkpoint if checkpoint is not None else source)
    build_encoder(config, state, source=str(source))   # validate: what is pushed loads back
    task, record = None, None
    if checkpoint is not None:
        record = run_record(checkpoint)
        if all((checkpoint / name).is_file() for name in FINETUNED_FILES):
            task = json.loads((checkpoint / "task.json").read_text())
    card = model_card(config.to_dict(), run=record, task=task, repo_id=repo_id,
                      base_model=_base_model(record.get("init") if record else None))
    write_encoder_files(folder, config.to_dict(), state, extra or None, card=card)
    if task is not None:
        for name in FINETUNED_FILES:
            shutil.copyfile(checkpoint / name, Path(folder) / name)
    return Path(folder)


def _base_model(init) -> str | None:
    """The Hub repo a run started from (its ``init``), for the card's ``base_model``."""
    try:
        return hub.parse_address(init).repo_id if hub.is_address(init) else None
    except CheckpointError:
        return None


def push_to_hub(source, repo_id: str, private: bool | None = None, token: str | bool | None = None,
                commit_message: str | None = None) -> str:
    """Upload an encoder, checkpoint folder or training run to the Hub repo ``repo_id`` (created if
    needed) as config.json + model.safetensors + README.md; returns the commit URL.
    ``ssamba.load(f"hf://{repo_id}")`` loads it back."""
    if isinstance(source, AudioEncoder):
        return source.push_to_hub(repo_id, private=private, token=token, commit_message=commit_message)
    hub.check_repo_id(repo_id)   # before staging: a typo costs nothing
    with tempfile.TemporaryDirectory(prefix="ssamba-push-") as tmp:
        staged = stage_for_hub(source, Path(tmp) / "repo", repo_id=repo_id)
        return hub.upload_folder(staged, repo_id, private=private, token=token,
                                 commit_message=commit_message or f"Upload ssamba checkpoint ({source})")
