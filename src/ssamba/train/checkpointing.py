"""Self-describing, atomically written training checkpoints, and the RNG state they carry.

Layout of a run directory::

    RUN_DIR/checkpoints/step-N/   config.json        model (encoder) + task + train config
                                  model.safetensors  the task's full state dict (encoder.*, heads)
                                  trainer_state.pt   optimizer, schedule, step, epoch, data position,
                                                     RNG states (python, numpy, torch, generators)
    RUN_DIR/checkpoints/last  ->  step-N   (relative symlinks, swapped atomically)
    RUN_DIR/checkpoints/best  ->  step-M

A checkpoint is written into a hidden temporary directory and renamed into place, and the
``last``/``best`` links are replaced with ``os.replace``; a process killed at any moment leaves
either the old or the new checkpoint complete, never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ssamba.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE, named_os_error
from ssamba.errors import CheckpointError

STATE_FILE = "trainer_state.pt"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _point(link: Path, target_name: str) -> None:
    """Atomically make ``link`` a relative symlink to ``target_name`` (a sibling directory)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link)


def save_checkpoint(run_dir: str | Path, step: int, model_state: dict[str, torch.Tensor],
                    config: dict[str, Any], trainer_state: dict[str, Any], *, best: bool = False,
                    keep_last: int = 3) -> Path:
    """Write checkpoint ``step-<step>`` atomically, point ``last`` (and ``best``) at it, prune old ones."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in model_state.items()}, str(tmp / WEIGHTS_FILE))
        torch.save(trainer_state, tmp / STATE_FILE)
    except BaseException as exc:  # e.g. the disk filled: leave no half checkpoint; `last` still points to the old one
        shutil.rmtree(tmp, ignore_errors=True)
        named = named_os_error(exc, final)
        if named is exc:
            raise
        raise named from exc
    if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
        old = root / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _point(root / "last", name)
    if best:
        _point(root / "best", name)
    prune(run_dir, keep_last)
    return final


def _step_of(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def prune(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints, never the ones ``last``/``best`` point to."""
    root = checkpoints_dir(run_dir)
    protected = {os.readlink(root / link) for link in ("last", "best") if (root / link).is_symlink()}
    steps = sorted((p for p in root.glob("step-*") if p.is_dir()), key=_step_of)
    for path in steps[:-keep_last] if keep_last > 0 else steps:
        if path.name not in protected:
            shutil.rmtree(path, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run dir (-> its ``last``), a checkpoints dir, or a checkpoint dir."""
    path = Path(path)
    for candidate in (path, path / "last", checkpoints_dir(path) / "last"):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / CONFIG_FILE).is_file():
            return candidate.resolve()
    raise CheckpointError(f"{path}: no checkpoint found (expected {CONFIG_FILE} + {WEIGHTS_FILE}, "
                          "or a run directory with checkpoints/last)")


def load_checkpoint(path: str | Path, with_state: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Read ``(model_state, config, trainer_state)`` from a checkpoint (or run) directory."""
    ckpt = resolve_checkpoint(path)
    try:
        config = json.loads((ckpt / CONFIG_FILE).read_text())
        weights = load_file(str(ckpt / WEIGHTS_FILE))
        state = None
        if with_state:
            if not (ckpt / STATE_FILE).is_file():
                raise CheckpointError(f"{ckpt}: {STATE_FILE} missing, cannot resume from it")
            state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt json / safetensors / pickle
        raise CheckpointError(f"{ckpt}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    return weights, config, state


# --- random number generator state -------------------------------------------------------------

def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """All RNG states that influence training: python, numpy, torch (CPU, CUDA) and named generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _python_state_to_tensor(random.getstate()),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                  "cached": cached},
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(_python_state_from_tensor(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), int(np_state["pos"]),
                         int(np_state["has_gauss"]), float(np_state["cached"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in (generators or {}).items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])


def _python_state_to_tensor(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_tensor(state: dict[str, Any]) -> tuple:
    return (state["version"], tuple(int(x) for x in state["internal"].tolist()), state["gauss"])
