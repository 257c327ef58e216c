"""ssamba.models: SSAMBA and SSAST encoders, their config, the registry of paper sizes, and loading
them from checkpoints (self-describing directories or official ``.pth`` files)."""

from ssamba.models.checkpoint import convert_official, load, load_state, push_to_hub, save_pretrained
from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import POOLINGS, SSAMBA, SSAST, AudioEncoder, pool_tokens, pooled_dim
from ssamba.models.official import infer_official_config, load_official_state
from ssamba.models.pooling import band_pool, mean_pool, mean_std_pool
from ssamba.models.registry import MODEL_PRESETS, create_model, list_models, model_config

__all__ = ["EncoderConfig", "AudioEncoder", "SSAMBA", "SSAST", "MODEL_PRESETS", "create_model",
           "list_models", "model_config", "load", "load_state", "save_pretrained", "convert_official", "push_to_hub",
           "load_official_state", "infer_official_config", "mean_pool", "mean_std_pool", "band_pool",
           "pool_tokens", "pooled_dim", "POOLINGS"]
