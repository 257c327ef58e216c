"""ssamba.models: SSAMBA and SSAST encoders, their config, and the registry of paper sizes."""

from ssamba.models.config import EncoderConfig
from ssamba.models.encoder import SSAMBA, SSAST, AudioEncoder
from ssamba.models.registry import MODEL_PRESETS, create_model, list_models, model_config

__all__ = ["EncoderConfig", "AudioEncoder", "SSAMBA", "SSAST", "MODEL_PRESETS", "create_model",
           "list_models", "model_config"]
