"""Register the ssamba classes with transformers' Auto classes (``exist_ok``, so repeating is harmless)."""

from __future__ import annotations

from ssamba.integrations.transformers_adapter.configuration import SsambaConfig, SsastConfig
from ssamba.integrations.transformers_adapter.feature_extraction import SsambaFeatureExtractor
from ssamba.integrations.transformers_adapter.modeling import (
    SsambaForAudioClassification,
    SsambaModel,
    SsastForAudioClassification,
    SsastModel,
)

CLASSES = {
    SsambaConfig: (SsambaModel, SsambaForAudioClassification),
    SsastConfig: (SsastModel, SsastForAudioClassification),
}


def register() -> None:
    """AutoConfig, AutoModel, AutoModelForAudioClassification and AutoFeatureExtractor learn
    ``model_type`` "ssamba" and "ssast"."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

    for config_class, (base, classifier) in CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, base, exist_ok=True)
        AutoModelForAudioClassification.register(config_class, classifier, exist_ok=True)
        AutoFeatureExtractor.register(config_class, SsambaFeatureExtractor, exist_ok=True)
