"""Official SSAMBA / SSAST ``.pth`` checkpoints -> (EncoderConfig, encoder state, extra state).

The official files are raw ``nn.DataParallel`` state_dicts without a config: keys look like
``module.v.layers.0.mixer.A_log`` (SSAMBA) or ``module.v.blocks.0.attn.qkv.weight`` (SSAST).
Here the ``module.`` prefix is stripped, encoder keys lose their ``v.`` prefix, the unused
ImageNet heads ``v.head*`` and the ``p_input_fdim``/``p_input_tdim`` buffers are dropped, and the
pretraining/fine-tuning heads (``mask_embed``, ``cpredlayer.*``, ``gpredlayer.*``, ``mlp_head.*``)
are returned separately as extra state. Size and geometry are inferred from tensor shapes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ssamba.errors import CheckpointError, ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.nn.patch import patch_grid_size

EXTRA_PREFIXES = ("mask_embed", "cpredlayer.", "gpredlayer.", "mlp_head.")
DROPPED_PREFIXES = ("v.head.", "v.head_dist.", "p_input_fdim", "p_input_tdim")
_HEADS_FOR_WIDTH = {192: 3, 384: 6, 768: 12}
GEOMETRY_KEYS = ("fstride", "tstride", "input_fdim", "input_tdim")


def read_official_pth(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a ``.pth`` state_dict safely (``weights_only=True``) and strip the ``module.`` prefix."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not an official .pth (a ssamba checkpoint directory needs no conversion)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not contain a state_dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _layer_count(state: dict, prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    if indices != set(range(len(indices))):
        raise CheckpointError(f"layer indices under {prefix!r} are not contiguous: {sorted(indices)}")
    return len(indices)


def _infer_strides(P: int, fdim: int, fshape: int, tshape: int) -> tuple[int, int, int]:
    """(fstride, tstride, input_tdim) for a patch count P when the checkpoint does not record its geometry.

    Tries fstride = fshape (pretraining), then 10 (the usual fine-tuning stride), then the others,
    with tstride equal to fstride; pass the geometry explicitly when this guess is wrong.
    """
    for stride in [fshape, 10] + [s for s in range(fshape, 0, -1) if s not in (fshape, 10)]:
        f = patch_grid_size(fdim, tshape, fshape, tshape, stride, stride)[0]
        if f > 0 and P % f == 0:
            t = P // f
            tstride = stride if stride <= tshape else tshape
            return stride, tstride, (t - 1) * tstride + tshape
    raise CheckpointError(f"cannot infer the patch geometry of {P} patches from {fdim} mel bins")


def infer_official_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> EncoderConfig:
    """EncoderConfig of a (``module.``-stripped) official state_dict, from tensor shapes alone."""
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{source}: not an official SSAMBA/SSAST checkpoint (missing {key!r})")
        return state[key]

    if "v.layers.0.mixer.A_log" in state:
        arch = "ssamba"
    elif "v.blocks.0.attn.qkv.weight" in state:
        arch = "ssast"
    else:
        raise CheckpointError(f"{source}: not an official SSAMBA/SSAST checkpoint "
                              f"(no v.layers.*.mixer or v.blocks.*.attn keys; first keys: {list(state)[:3]})")
    proj = need("v.patch_embed.proj.weight")
    if proj.dim() != 4 or proj.shape[1] != 1:
        raise CheckpointError(f"{source}: v.patch_embed.proj.weight has shape {tuple(proj.shape)}, "
                              "expected (D, 1, fshape, tshape)")
    dim, fshape, tshape = proj.shape[0], proj.shape[2], proj.shape[3]
    fields: dict = dict(arch=arch, embed_dim=dim, fshape=fshape, tshape=tshape)
    if arch == "ssamba":
        fields["depth"] = _layer_count(state, "v.layers.")
        mixer = "v.layers.0.mixer."
        d_inner = need(mixer + "in_proj.weight").shape[0] // 2
        fields.update(expand=d_inner // dim, d_state=need(mixer + "A_log").shape[1],
                      d_conv=need(mixer + "conv1d.weight").shape[2], num_cls_tokens=1, norm_eps=1e-5,
                      drop_path_rate=0.1)
        dt_rank = need(mixer + "dt_proj.weight").shape[1]
        fields["dt_rank"] = None if dt_rank == -(-dim // 16) else dt_rank
    else:
        fields["depth"] = _layer_count(state, "v.blocks.")
        fields.update(num_heads=_HEADS_FOR_WIDTH.get(dim, max(1, dim // 64)),
                      mlp_ratio=need("v.blocks.0.mlp.fc1.weight").shape[0] / dim,
                      num_cls_tokens=2 if "v.dist_token" in state else 1, norm_eps=1e-6, drop_path_rate=0.0)
    num_patches = need("v.pos_embed").shape[1] - fields["num_cls_tokens"]
    if "p_input_fdim" in state and "p_input_tdim" in state:
        fdim, tdim = int(state["p_input_fdim"].item()), int(state["p_input_tdim"].item())
        fields.update(input_fdim=fdim, input_tdim=tdim, fstride=fshape, tstride=tshape)
        grid = math.prod(patch_grid_size(fdim, tdim, fshape, tshape, fshape, tshape))
        if grid != num_patches:
            raise CheckpointError(f"{source}: v.pos_embed has {num_patches} patch positions but the recorded "
                                  f"pretraining input {fdim}x{tdim} gives {grid}")
    else:  # a fine-tuned checkpoint: geometry not recorded
        fstride, tstride, tdim = _infer_strides(num_patches, 128, fshape, tshape)
        fields.update(input_fdim=128, input_tdim=tdim, fstride=fstride, tstride=tstride)
    try:
        return EncoderConfig(**fields)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: inferred an invalid config ({exc})") from None


def split_official_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(encoder state with ``v.`` stripped, extra head state); unused heads/buffers dropped."""
    encoder, extra = {}, {}
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        if key.startswith(EXTRA_PREFIXES):
            extra[key] = value
        elif key.startswith("v."):
            encoder[key[2:]] = value
        else:
            encoder[key] = value  # unknown: kept so that strict loading reports it
    return encoder, extra


def load_official_state(path: str | os.PathLike) -> tuple[EncoderConfig, dict, dict]:
    """Read an official ``.pth``: (inferred EncoderConfig, encoder state_dict, extra head state)."""
    state = read_official_pth(path)
    config = infer_official_config(state, source=str(path))
    encoder, extra = split_official_state(state)
    return config, encoder, extra
