"""The transformers adapter (ssamba.integrations.transformers_adapter): ssamba checkpoint directories
load through the Auto classes with the same tokens as ``ssamba.load``; what the adapter saves loads
back with ``ssamba.load``; a fine-tuned ssamba run loads as a classifier with its labels; the
feature extractor is ssamba's input pipeline. Offline: nothing here reaches the Hub."""

from __future__ import annotations

import json
import os

import pytest
import torch
from dataset_layouts import class_tone
from tolerances import assert_close_to_scale, sum_ulps

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import ssamba  # noqa: E402
from ssamba.data.manifests import DatasetSpec  # noqa: E402
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, save_finetuned  # noqa: E402
from ssamba.features import FeatureConfig, FeatureExtractor  # noqa: E402
from ssamba.inference import embed  # noqa: E402
from ssamba.integrations.transformers_adapter import (  # noqa: E402
    SsambaConfig,
    SsambaFeatureExtractor,
    SsambaForAudioClassification,
    SsambaModel,
    SsastConfig,
    SsastForAudioClassification,
    SsastModel,
)
from ssamba.models.checkpoint import load_state  # noqa: E402

FRAMES = 48
TINY = {"ssamba": dict(embed_dim=32, depth=2, input_tdim=FRAMES, drop_path_rate=0.0, scan_backend="chunked"),
        "ssast": dict(embed_dim=32, depth=2, num_heads=2, input_tdim=FRAMES, drop_path_rate=0.0)}
CLASSES = {"ssamba": (SsambaConfig, SsambaModel, SsambaForAudioClassification),
           "ssast": (SsastConfig, SsastModel, SsastForAudioClassification)}


def encoder_dir(tmp_path, arch: str):
    torch.manual_seed(0)
    encoder = ssamba.create_model(f"{arch}_tiny", **TINY[arch])
    encoder.save_pretrained(tmp_path / arch)
    return tmp_path / arch


def fbank(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, FRAMES, 128, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_auto_model_gives_the_tokens_of_ssamba_load(tmp_path, arch):
    from transformers import AutoConfig, AutoModel

    directory = encoder_dir(tmp_path, arch)
    config_class, model_class, _ = CLASSES[arch]
    assert type(AutoConfig.from_pretrained(directory)) is config_class
    model = AutoModel.from_pretrained(directory)
    assert type(model) is model_class and not model.training
    x = fbank()
    reference = ssamba.load(directory)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        want = reference.forward_features(x)
        layers = reference.forward_layers(x)
    assert torch.equal(out.last_hidden_state, want)                       # same weights, same code: bit-identical
    assert torch.equal(out.pooler_output, want[:, reference.num_cls_tokens:].mean(dim=1))
    assert len(out.hidden_states) == reference.num_layers + 1             # embedded tokens, then each layer
    for got, expected in zip(out.hidden_states[1:], layers):
        assert torch.equal(got, expected)
    assert model(x).hidden_states is None


def test_directory_without_model_type_still_loads_with_ssamba(tmp_path):
    directory = encoder_dir(tmp_path, "ssast")
    meta = json.loads((directory / "config.json").read_text())
    assert meta["model_type"] == "ssast"                                  # written by checkpoints.format
    del meta["model_type"]
    (directory / "config.json").write_text(json.dumps(meta))
    x = fbank(1)
    with torch.no_grad():
        want = ssamba.load(directory).forward_features(x)
        got = SsastModel.from_pretrained(directory)(x).last_hidden_state  # a named class needs no model_type
    assert torch.equal(got, want)


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_adapter_save_pretrained_loads_back_with_ssamba(tmp_path, arch):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    directory = encoder_dir(tmp_path, arch)
    labels = ["dog", "rain", "siren"]
    model = AutoModelForAudioClassification.from_pretrained(
        directory, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    assert type(model) is CLASSES[arch][2] and model.config.num_labels == 3
    model.save_pretrained(tmp_path / "saved")
    x = fbank()
    with torch.no_grad():
        want_tokens = model.encoder.forward_features(x)
        want_logits = model(x).logits
        assert torch.equal(ssamba.load(tmp_path / "saved").forward_features(x), want_tokens)
        again = AutoModelForAudioClassification.from_pretrained(tmp_path / "saved")
        assert torch.equal(again(x).logits, want_logits)
    assert again.config.id2label == dict(enumerate(labels))
    _, _, extra = load_state(tmp_path / "saved")                          # the head rides along as extra state
    assert sorted(extra) == ["head.linear.bias", "head.linear.weight", "head.norm.bias", "head.norm.weight"]
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "saved")   # saved beside the model
    assert type(extractor) is SsambaFeatureExtractor and extractor.max_length == FRAMES


def test_classification_losses_follow_problem_type(tmp_path):
    directory = encoder_dir(tmp_path, "ssast")
    x = fbank(3)
    single = SsastForAudioClassification.from_pretrained(directory, num_labels=4)
    labels = torch.tensor([0, 3, 1])
    out = single(x, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert single.config.problem_type == "single_label_classification"
    multi = SsastForAudioClassification.from_pretrained(directory, num_labels=4,
                                                        problem_type="multi_label_classification")
    targets = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.float32)
    out = multi(x, labels=targets)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))


def test_finetuned_run_loads_as_classifier_with_its_labels(tmp_path):
    from transformers import AutoModelForAudioClassification

    torch.manual_seed(0)
    encoder = ssamba.create_model("ssamba_tiny", **TINY["ssamba"])
    task = FinetuneTask(encoder, 3, "ce", pooling="mean_std").eval()
    with torch.no_grad():
        for p in task.head.parameters():
            p.normal_()                                                   # a head that is not the init
    spec = DatasetSpec("toy", ["low", "mid", "high"])
    config = FinetuneConfig(features="speechcommands", pooling="mean_std")
    save_finetuned(task, tmp_path / "model", spec, config)
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "model")
    assert model.config.id2label == {0: "low", 1: "mid", 2: "high"} and model.config.label2id["high"] == 2
    assert model.config.problem_type == "single_label_classification" and model.config.pooling == "mean_std"
    x = fbank()
    with torch.no_grad():
        assert torch.equal(model(x).logits, task.logits(x))
    extractor = SsambaFeatureExtractor.from_pretrained(tmp_path / "model")  # the run's preset, from task.json
    preset = FeatureConfig.preset("speechcommands")
    assert (extractor.mean, extractor.std, extractor.max_length) == (preset.mean, preset.std, FRAMES)


def test_feature_extractor_is_ssamba_input_pipeline(tmp_path):
    extractor = SsambaFeatureExtractor.from_pretrained(encoder_dir(tmp_path, "ssast"))  # from config.json
    assert extractor.max_length == FRAMES
    waves = [class_tone(0, 0.3), class_tone(2, 0.7)]                      # 28 and 68 frames
    batch = extractor(waves, sampling_rate=16000, return_tensors="pt")
    reference = FeatureExtractor(FeatureConfig(target_length=FRAMES))
    for row, wave in enumerate(waves):
        assert torch.equal(batch["input_values"][row], reference(torch.from_numpy(wave)))
    assert batch["attention_mask"].sum(dim=1).tolist() == [28, FRAMES]
    longest = extractor(waves, padding="longest")
    assert longest["input_values"].shape == (2, 68, 128) and longest["attention_mask"].sum(axis=1).tolist() == [28, 68]
    resampled = extractor(waves[0][::2].copy(), sampling_rate=8000)       # resampled with ssamba's loader
    assert resampled["input_values"].shape == (1, FRAMES, 128)


def test_pooler_output_equals_inference_embed(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel

    directory = encoder_dir(tmp_path, "ssamba")
    SsambaFeatureExtractor.from_pretrained(directory).save_pretrained(directory)
    wave = class_tone(1, 0.4)                                             # shorter than one window: one pass
    inputs = AutoFeatureExtractor.from_pretrained(directory)(wave, return_tensors="pt")
    with torch.no_grad():
        pooled = AutoModel.from_pretrained(directory)(**inputs).pooler_output
    want = torch.from_numpy(embed([wave], directory, sample_rate=16000))
    n = 128 * FRAMES                                                      # the longest sums: fbank bins x frames
    assert_close_to_scale(pooled, want, sum_ulps(n, TINY["ssamba"]["depth"]), "pooler_output vs embed")


def test_hub_repo_loads_through_the_cache_offline(hub_cache, tmp_path):
    """A ssamba checkpoint repo on the Hub (here: in the Hub cache, offline) loads by repo id with
    transformers and by ``hf://`` address with ssamba, to the same tokens; a fine-tuned run's repo
    loads as a classifier with its labels."""
    from hub_helpers import folder_files, write_hub_cache
    from transformers import AutoModel, AutoModelForAudioClassification

    write_hub_cache(hub_cache, "acme/ssamba-tiny", folder_files(encoder_dir(tmp_path, "ssamba")))
    hub = dict(cache_dir=str(hub_cache), local_files_only=True)
    model = AutoModel.from_pretrained("acme/ssamba-tiny", **hub)
    x = fbank(1)
    with torch.no_grad():
        assert torch.equal(model(x).last_hidden_state, ssamba.load("hf://acme/ssamba-tiny").forward_features(x))
    assert SsambaFeatureExtractor.from_pretrained("acme/ssamba-tiny", **hub).max_length == FRAMES
    task = FinetuneTask(ssamba.create_model("ssast_tiny", **TINY["ssast"]), 2, "bce").eval()
    save_finetuned(task, tmp_path / "run", DatasetSpec("tags", ["speech", "music"], multi_label=True),
                   FinetuneConfig(loss="bce"))
    write_hub_cache(hub_cache, "acme/tagger", folder_files(tmp_path / "run"))
    write_hub_cache(hub_cache, "acme/runs", {f"esc/{k}": v for k, v in folder_files(tmp_path / "run").items()},
                    revision="v1")
    for tagger in (AutoModelForAudioClassification.from_pretrained("acme/tagger", **hub),
                   SsastForAudioClassification.from_pretrained("hf://acme/runs@v1/esc", **hub)):
        assert tagger.config.id2label == {0: "speech", 1: "music"}
        assert tagger.config.problem_type == "multi_label_classification"
        with torch.no_grad():
            assert torch.equal(tagger(x).logits, task.logits(x))
    with torch.no_grad():                                              # ssamba's address form, named class
        assert torch.equal(SsambaModel.from_pretrained("hf://acme/ssamba-tiny", **hub)(x).last_hidden_state,
                           model(x).last_hidden_state)


def test_a_model_built_from_a_config_keeps_ssambas_own_init():
    """transformers initialises only the head: the encoder is what ssamba builds from the same seed."""
    from ssamba.models.encoder import AudioEncoder

    config = SsambaConfig(encoder=TINY["ssamba"], num_labels=4)
    torch.manual_seed(0)
    want = AudioEncoder.from_config(config.encoder_config).state_dict()
    torch.manual_seed(0)
    model = SsambaForAudioClassification(config)
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in want.items())
    assert model.head.linear.weight.shape == (4, 32) and torch.isfinite(model.head.linear.weight).all()
    assert torch.equal(model.head.norm.weight, torch.ones(32)) and model.head.linear.weight.std() > 0


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_attention_mask_encodes_each_clip_at_its_own_length(tmp_path, arch):
    """With ``use_attention_mask`` a batch padded to its longest clip gives each clip's outputs
    alone; without it (the default) the padding is read, as the official code reads it."""
    from transformers import AutoModel

    directory = encoder_dir(tmp_path, arch)
    model = AutoModel.from_pretrained(directory, use_attention_mask=True)
    extractor = SsambaFeatureExtractor.from_pretrained(directory)
    waves = [class_tone(0, 0.3), class_tone(2, 0.45)]                     # 28 and 43 frames
    batch = extractor(waves, padding="longest", return_tensors="pt")
    with torch.no_grad():
        together = model(**batch).pooler_output
        for row, wave in enumerate(waves):
            alone = model(**extractor(wave, padding="longest", return_tensors="pt")).pooler_output[0]
            assert_close_to_scale(together[row], alone, sum_ulps(128 * 43, TINY[arch]["depth"]), f"clip {row}")
        padded = AutoModel.from_pretrained(directory)(**batch).pooler_output   # the mask not used
    assert not torch.allclose(padded[0], together[0], atol=1e-4)
