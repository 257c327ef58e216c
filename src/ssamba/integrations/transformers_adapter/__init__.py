"""SSAMBA and SSAST as transformers models (``pip install 'ssamba[transformers]'``).

Importing this package registers the classes with transformers' Auto classes; ``import ssamba``
does it for you as soon as transformers' Auto classes are imported
(``ssamba.integrations.autoregister``). Then a ssamba checkpoint directory (or Hub repo) works
with ``AutoConfig``, ``AutoModel``, ``AutoModelForAudioClassification``,
``AutoFeatureExtractor``, ``pipeline("audio-classification")`` and ``Trainer``.
"""

from ssamba.integrations.transformers_adapter.configuration import SsambaConfig, SsastConfig
from ssamba.integrations.transformers_adapter.feature_extraction import SsambaFeatureExtractor
from ssamba.integrations.transformers_adapter.modeling import (
    SsambaForAudioClassification,
    SsambaModel,
    SsambaPreTrainedModel,
    SsastForAudioClassification,
    SsastModel,
)
from ssamba.integrations.transformers_adapter.registration import register

register()

__all__ = ["SsambaConfig", "SsastConfig", "SsambaFeatureExtractor", "SsambaModel", "SsambaPreTrainedModel",
           "SsambaForAudioClassification", "SsastModel", "SsastForAudioClassification", "register"]
