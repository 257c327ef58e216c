"""Named encoder sizes of the paper: ``create_model("ssamba_tiny", **overrides)``.

SSAMBA: 24 bidirectional-Mamba layers, D = 192 / 384 / 768, 1 CLS token, LayerNorm eps 1e-5,
drop path 0.1. SSAST: 12 DeiT layers, D = 192 / 384 / 768 with 3 / 6 / 12 heads, cls + dist
tokens, LayerNorm eps 1e-6, no drop path. Both: 16x16 patches, stride 16, 128 x 1024 input.
"""

from __future__ import annotations

from ssamba.errors import ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import AudioEncoder

_WIDTHS = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}


def _preset(arch: str, size: str) -> dict:
    dim, heads = _WIDTHS[size]
    if arch == "ssamba":
        return dict(arch="ssamba", embed_dim=dim, depth=24, num_cls_tokens=1, norm_eps=1e-5,
                    drop_path_rate=0.1)
    return dict(arch="ssast", embed_dim=dim, depth=12, num_heads=heads, num_cls_tokens=2, norm_eps=1e-6,
                drop_path_rate=0.0)


MODEL_PRESETS: dict[str, dict] = {f"{arch}_{size}": _preset(arch, size)
                                  for arch in ("ssamba", "ssast") for size in _WIDTHS}


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return sorted(MODEL_PRESETS)


def model_config(name: str, **overrides) -> EncoderConfig:
    """The EncoderConfig of a named size with ``overrides`` applied (unknown names/keys -> ConfigError)."""
    if name not in MODEL_PRESETS:
        raise ConfigError(f"model {name!r} is unknown; choose one of {', '.join(list_models())}")
    fields = dict(MODEL_PRESETS[name], name=name)
    fields.update(overrides)
    try:
        return EncoderConfig.from_dict(fields)
    except TypeError as exc:  # wrong value types surface as TypeError from the dataclass
        raise ConfigError(f"model {name!r}: {exc}") from None


def create_model(name: str, **overrides) -> AudioEncoder:
    """A randomly initialised encoder of a named size, e.g. ``create_model("ssamba_tiny", tstride=10)``."""
    return AudioEncoder.from_config(model_config(name, **overrides))
