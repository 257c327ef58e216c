"""``SsambaConfig`` / ``SsastConfig``: the transformers config of a ssamba checkpoint.

Its ``config.json`` is ssamba's own (``format``, ``format_version``, ``encoder`` = the
``EncoderConfig`` dict, whose ``features`` names the input pipeline) plus transformers' keys
(``model_type``, labels, ``problem_type``) and the classification head's ``pooling`` and
``layers``: so ``ssamba.load`` reads what ``save_pretrained`` writes and transformers reads
what ssamba writes.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from ssamba.checkpoints.format import FORMAT_VERSION
from ssamba.errors import ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import POOLINGS


class SsambaConfig(PretrainedConfig):
    """Config of an SSAMBA encoder (``model_type="ssamba"``); ``SsastConfig`` for SSAST.

    ``encoder``: ``EncoderConfig`` fields (a dict; default: that class's defaults for this arch).
    ``pooling``/``layers``: what a classification head reads, as ssamba's fine-tuning
    (``"mean"``, ``"mean_std"``, ``"bands"``; ``"last"`` or ``"weighted_sum"``).
    ``use_attention_mask``: False (default) reads the padded input whole, as the official code;
    True encodes each clip at its own length (the mask's real frames), equal to the clip alone.
    """

    model_type = "ssamba"

    encoder: dict | None = None
    pooling: str = "mean"
    layers: str = "last"
    use_attention_mask: bool = False
    format: str = "ssamba-encoder"
    format_version: int = FORMAT_VERSION

    def __post_init__(self, **kwargs) -> None:
        encoder = dict(self.encoder) if self.encoder is not None else {}
        arch = encoder.setdefault("arch", self.model_type)
        if arch != self.model_type:
            raise ConfigError(f"config: encoder arch {arch!r} does not match model_type {self.model_type!r}")
        self.encoder = EncoderConfig.from_dict(encoder).to_dict()   # validated and complete
        if self.pooling not in POOLINGS:
            raise ConfigError(f"config: pooling={self.pooling!r} must be one of {', '.join(POOLINGS)}")
        if self.layers not in ("last", "weighted_sum"):
            raise ConfigError(f"config: layers={self.layers!r} must be 'last' or 'weighted_sum'")
        super().__post_init__(**kwargs)

    def to_diff_dict(self) -> dict:
        """As transformers writes ``config.json``, keeping ssamba's format keys even at their defaults."""
        return {**super().to_diff_dict(), "format": self.format, "format_version": self.format_version}

    @property
    def encoder_config(self) -> EncoderConfig:
        """The ssamba ``EncoderConfig`` this config describes."""
        return EncoderConfig.from_dict(self.encoder)

    @property
    def hidden_size(self) -> int:
        return self.encoder["embed_dim"]

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder["depth"]


class SsastConfig(SsambaConfig):
    """Config of an SSAST (ViT) encoder (``model_type="ssast"``)."""

    model_type = "ssast"


CONFIG_CLASSES = {"ssamba": SsambaConfig, "ssast": SsastConfig}
