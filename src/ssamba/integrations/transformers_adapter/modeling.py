"""SSAMBA / SSAST as transformers models: ``SsambaModel`` (encoder -> ``BaseModelOutputWithPooling``)
and ``SsambaForAudioClassification`` (encoder + ssamba's fine-tuning head ->
``SequenceClassifierOutput``); the SSAST classes are the same with ``SsastConfig``.

Weights: both hold ssamba's ``AudioEncoder`` under ``encoder`` (``base_model_prefix``), so a ssamba
checkpoint directory (keys without a prefix) loads with transformers' own base-model prefix
handling, and what ``save_pretrained`` writes (``encoder.*`` plus ``head.*``) is what ssamba's
Trainer checkpoints hold, which ``ssamba.load`` reads. A fine-tuned ssamba run keeps its head in
``head.safetensors`` and its labels in ``task.json``: ``from_pretrained`` of the classifier reads
both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import cached_file

from ssamba.downstream.finetune import ClassificationHead
from ssamba.downstream.layer_sum import WeightedLayerSum, layer_embeddings
from ssamba.errors import CheckpointError
from ssamba.integrations.transformers_adapter.addresses import hub_arguments
from ssamba.integrations.transformers_adapter.configuration import SsambaConfig, SsastConfig
from ssamba.integrations.transformers_adapter.feature_extraction import SsambaFeatureExtractor
from ssamba.models.encoder import AudioEncoder, pool_tokens, pooled_dim

HEAD_FILE = "head.safetensors"   # a fine-tuned ssamba run's head (ssamba.downstream.finetune.save_finetuned)
TASK_FILE = "task.json"          # its labels, loss, pooling and layers


class SsambaPreTrainedModel(PreTrainedModel):
    """Shared plumbing: config class, input name, weight init of the parts ssamba does not build."""

    config_class = SsambaConfig
    base_model_prefix = "encoder"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Only the head is transformers' to initialise, as torch initialises ssamba's fine-tuning
        head; the encoder initialises itself when built, and is otherwise read from the checkpoint.
        (``transformers.initialization`` leaves tensors that were loaded alone.)"""
        head = getattr(self, "head", None)
        if head is None or not any(module is m for m in head.modules()):
            return
        if isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, WeightedLayerSum):
            init.zeros_(module.weights)

    def lengths(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Each clip's real frames, when the config says to use the mask."""
        if attention_mask is None or not self.config.use_attention_mask:
            return None
        return attention_mask.sum(dim=-1).long()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' ``from_pretrained``; also takes ssamba's ``hf://OWNER/REPO[@REV][/FOLDER]``."""
        name, kwargs = hub_arguments(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(name, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """transformers' files (``config.json`` that ssamba reads too, ``model.safetensors`` with
        ``encoder.*`` keys that ``ssamba.load`` reads) plus ``preprocessor_config.json``, so the
        directory works with ``pipeline(model=DIR)`` as it is."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            SsambaFeatureExtractor.from_encoder_config(self.config.encoder_config).save_pretrained(save_directory)


class SsambaModel(SsambaPreTrainedModel):
    """The encoder: ``input_values`` (B, frames, mel bins) normalised fbank ->
    ``last_hidden_state`` (B, n_cls + patches, D) tokens, ``pooler_output`` (B, D) the official
    mean of the patch tokens, ``hidden_states`` (embedded tokens, then every layer's output; the
    last equals ``last_hidden_state``) when asked."""

    def __init__(self, config: SsambaConfig) -> None:
        super().__init__(config)
        self.encoder = AudioEncoder.from_config(config.encoder_config)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None, **kwargs):
        """``attention_mask`` is used only with ``config.use_attention_mask`` (each clip at its own
        length; padding tokens are zeros); by default the encoder reads the padded fbank whole and
        the mean covers every patch, as in the official recipes."""
        want_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        lengths = self.lengths(attention_mask)
        if want_states:
            layers = self.encoder.forward_layers(input_values, lengths=lengths)
            states, tokens = (self.encoder.embed_tokens(input_values, lengths=lengths), *layers), layers[-1]
        else:
            states, tokens = None, self.encoder.forward_features(input_values, lengths=lengths)
        output = BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=self.encoder.pool(tokens, lengths),
                                            hidden_states=states)
        return output if return_dict is not False else output.to_tuple()


class SsambaForAudioClassification(SsambaPreTrainedModel):
    """Encoder + ssamba's fine-tuning head (LayerNorm -> Linear on the pooled tokens, or on a learned
    weighted sum of every layer's). Loss by ``config.problem_type``: cross-entropy for single-label
    (integer labels), binary cross-entropy for ``"multi_label_classification"`` (multi-hot labels)."""

    def __init__(self, config: SsambaConfig) -> None:
        super().__init__(config)
        self.encoder = AudioEncoder.from_config(config.encoder_config)
        weighted = config.layers == "weighted_sum"
        self.head = ClassificationHead(pooled_dim(self.encoder, config.pooling), config.num_labels,
                                       self.encoder.num_layers if weighted else None)
        self.post_init()

    def embed(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None):
        """What the head reads (as ``ssamba.downstream.finetune.FinetuneTask.embed``)."""
        pooling = self.config.pooling
        if self.config.layers == "weighted_sum":
            return layer_embeddings(self.encoder, input_values, pooling, lengths)
        return pool_tokens(self.encoder, self.encoder.forward_features(input_values, lengths=lengths), pooling, lengths)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs):
        """``attention_mask``: as in ``SsambaModel.forward``."""
        logits = self.head(self.embed(input_values, self.lengths(attention_mask)))
        loss = None if labels is None else self.classification_loss(logits, labels)
        output = SequenceClassifierOutput(loss=loss, logits=logits)
        return output if return_dict is not False else output.to_tuple()

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        problem = self.config.problem_type
        if problem is None:
            problem = "single_label_classification" if labels.dtype in (torch.long, torch.int) \
                else "multi_label_classification"
            self.config.problem_type = problem
        if problem == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if problem == "single_label_classification":
            return nn.functional.cross_entropy(logits, labels.view(-1).long())
        raise CheckpointError(f"problem_type={problem!r}: ssamba heads classify (single- or multi-label)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, config=None, **kwargs):
        """As transformers' ``from_pretrained``; a fine-tuned ssamba run directory (``task.json`` +
        ``head.safetensors`` beside the encoder) loads with its labels, head options and head weights."""
        pretrained_model_name_or_path, kwargs = hub_arguments(pretrained_model_name_or_path, kwargs)
        source = str(pretrained_model_name_or_path)
        hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs}
        task_path = cached_file(source, TASK_FILE, _raise_exceptions_for_missing_entries=False, **hub)
        if task_path is None:
            return super().from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)
        if config is None:
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path, **hub)
        apply_task(config, json.loads(Path(task_path).read_text()), source)
        model = super().from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)
        head_path = cached_file(source, HEAD_FILE, _raise_exceptions_for_missing_entries=False, **hub)
        if head_path is None:
            raise CheckpointError(f"{source}: has {TASK_FILE} but no {HEAD_FILE} (not a fine-tuned ssamba run)")
        state = load_file(head_path)
        try:
            model.head.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{head_path}: does not fit the head of {TASK_FILE} "
                                  f"({str(exc).splitlines()[0]})") from None
        model.head.to(dtype=model.encoder.pos_embed.dtype)
        return model


def apply_task(config: SsambaConfig, task: dict, source: str) -> None:
    """Labels, problem type and head options of a fine-tuned ssamba run's ``task.json``, set on ``config``."""
    try:
        names = list(task["class_names"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{source}/{TASK_FILE}: no class_names list") from None
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    multi = task.get("multi_label") or task.get("loss") == "bce"
    config.problem_type = "multi_label_classification" if multi else "single_label_classification"
    if task.get("feature_preset"):   # the input pipeline the run was trained with
        config.encoder = {**config.encoder, "features": task["feature_preset"]}
    config.pooling = task.get("pooling", "mean")
    config.layers = task.get("layers", "last")


class SsastModel(SsambaModel):
    """``SsambaModel`` for SSAST encoders (``model_type="ssast"``)."""

    config_class = SsastConfig


class SsastForAudioClassification(SsambaForAudioClassification):
    """``SsambaForAudioClassification`` for SSAST encoders (``model_type="ssast"``)."""

    config_class = SsastConfig
