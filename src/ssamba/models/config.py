"""EncoderConfig: everything needed to rebuild an SSAMBA or SSAST encoder (stored as config.json)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ssamba import config
from ssamba.errors import ConfigError
from ssamba.nn.patch import patch_grid_size

ARCHS = ("ssamba", "ssast")
ATTENTIONS = ("naive", "sdpa")


@dataclass
class EncoderConfig:
    """Architecture and input geometry of an audio encoder.

    Geometry: fbank inputs are (time, frequency) = (input_tdim, input_fdim) frames x mel bins,
    cut into (fshape x tshape) patches with strides (fstride, tstride). The stored positional
    embedding belongs to the patch grid of (input_fdim, input_tdim) at these strides; other
    input lengths get it cropped or interpolated (see ``ssamba.nn.patch.resize_pos_embed``).

    ``features``: the input normalisation the encoder expects, a ``FeatureConfig`` preset name
    (``"audioset"``, ``"esc50"``, ``"speechcommands"``) or a dict of ``FeatureConfig`` fields.
    ``scan_backend``: force a selective-scan backend (None = automatic, see ``ssamba.nn.scan``).
    ``attention``: SSAST attention implementation, ``"sdpa"`` or ``"naive"``.
    """

    arch: str = "ssamba"
    embed_dim: int = 192
    depth: int = 24
    num_heads: int = 3
    mlp_ratio: float = 4.0
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None
    fshape: int = 16
    tshape: int = 16
    fstride: int = 16
    tstride: int = 16
    input_fdim: int = 128
    input_tdim: int = 1024
    num_cls_tokens: int = 1
    norm_eps: float = 1e-5
    drop_path_rate: float = 0.1
    scan_backend: str | None = None
    attention: str = "sdpa"
    features: Any = "audioset"
    name: str | None = None

    def __post_init__(self) -> None:
        config.check_choice("arch", self.arch, ARCHS)
        for key in ("embed_dim", "depth", "fshape", "tshape", "fstride", "tstride", "input_fdim",
                    "input_tdim", "d_state", "expand", "d_conv"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={value!r}: must be a positive integer")
        if self.input_fdim < self.fshape or self.input_tdim < self.tshape:
            raise ConfigError(f"input {self.input_fdim}x{self.input_tdim} (freq x time) is smaller than one "
                              f"{self.fshape}x{self.tshape} patch")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate={self.drop_path_rate!r}: must be in [0, 1)")
        if self.arch == "ssamba":
            if self.depth % 2:
                raise ConfigError(f"depth={self.depth}: SSAMBA runs layers in (forward, flipped) pairs, "
                                  "so depth must be even")
            if self.num_cls_tokens != 1:
                raise ConfigError(f"num_cls_tokens={self.num_cls_tokens}: SSAMBA has exactly 1 CLS token")
        else:
            if self.num_cls_tokens not in (1, 2):
                raise ConfigError(f"num_cls_tokens={self.num_cls_tokens}: SSAST has 1 or 2 (cls + dist) tokens")
            if self.embed_dim % self.num_heads:
                raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
            config.check_choice("attention", self.attention, ATTENTIONS)

    @property
    def resolved_dt_rank(self) -> int:
        """dt_rank, with the official "auto" value ceil(embed_dim / 16) when unset."""
        return self.dt_rank or math.ceil(self.embed_dim / 16)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency, time) of the stored positional embedding."""
        return patch_grid_size(self.input_fdim, self.input_tdim, self.fshape, self.tshape, self.fstride, self.tstride)

    @property
    def num_patches(self) -> int:
        f, t = self.grid
        return f * t

    def to_dict(self) -> dict:
        """JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        """Build from a dict (e.g. config.json); unknown keys are an error naming them."""
        return config.from_dict(cls, data, "model")

    def replace(self, **overrides) -> "EncoderConfig":
        """A copy with some fields changed (validated; unknown names are an error)."""
        return config.replace(self, "model", **overrides)
