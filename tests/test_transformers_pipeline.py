"""transformers' own tools on ssamba models, on CPU and offline: ``pipeline("audio-classification")``
on numpy arrays, and ``Trainer`` fine-tuning a tiny classifier on a ``datasets.Dataset``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from dataset_layouts import class_tone

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import ssamba  # noqa: E402
from ssamba.data.manifests import DatasetSpec  # noqa: E402
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, save_finetuned  # noqa: E402
from ssamba.integrations.transformers_adapter import SsambaFeatureExtractor  # noqa: E402

TINY = dict(embed_dim=32, depth=2, num_heads=2, input_tdim=32, drop_path_rate=0.0)
LABELS = ["low", "high"]


def tiny_classifier_dir(tmp_path):
    from transformers import AutoModelForAudioClassification

    torch.manual_seed(0)
    ssamba.create_model("ssast_tiny", **TINY).save_pretrained(tmp_path / "encoder")
    model = AutoModelForAudioClassification.from_pretrained(
        tmp_path / "encoder", id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model.save_pretrained(tmp_path / "classifier")
    return tmp_path / "classifier", model


def test_pipeline_classifies_numpy_arrays(tmp_path):
    from transformers import pipeline

    directory, model = tiny_classifier_dir(tmp_path)
    classify = pipeline("audio-classification", model=str(directory), device="cpu")
    waves = [class_tone(0, 0.3), class_tone(4, 0.25)]
    results = classify(waves, top_k=2)
    extractor = SsambaFeatureExtractor.from_pretrained(directory)
    with torch.no_grad():
        want = torch.softmax(model.eval()(**extractor(waves, return_tensors="pt")).logits, dim=-1)
    for result, probs in zip(results, want):
        assert sorted(r["label"] for r in result) == sorted(LABELS)
        got = {r["label"]: r["score"] for r in result}
        assert np.allclose([got[name] for name in LABELS], probs.numpy(), rtol=1e-5)


def test_pipeline_on_a_finetuned_ssamba_run(tmp_path):
    """A run's model/ folder has no preprocessor_config.json: the extractor comes from its config."""
    from transformers import pipeline

    torch.manual_seed(0)
    task = FinetuneTask(ssamba.create_model("ssamba_tiny", **{**TINY, "scan_backend": "chunked"}), 3, "ce").eval()
    save_finetuned(task, tmp_path / "model", DatasetSpec("toy", ["a", "b", "c"]), FinetuneConfig(features="esc50"))
    classify = pipeline("audio-classification", model=str(tmp_path / "model"), device="cpu",
                        feature_extractor=SsambaFeatureExtractor.from_pretrained(tmp_path / "model"))
    result = classify(class_tone(1, 0.3))
    assert sorted(r["label"] for r in result) == ["a", "b", "c"]
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)


def test_trainer_fine_tunes_on_a_datasets_dataset(tmp_path):
    from transformers import AutoModelForAudioClassification, Trainer, TrainingArguments

    directory, _ = tiny_classifier_dir(tmp_path)
    extractor = SsambaFeatureExtractor.from_pretrained(directory)
    rows = {"audio": [class_tone(4 * c, 0.3, seed=i) for i in range(4) for c in (0, 1)],
            "label": [c for _ in range(4) for c in (0, 1)]}
    data = datasets.Dataset.from_dict(rows).map(lambda b: extractor(b["audio"]), batched=True, remove_columns=["audio"])
    model = AutoModelForAudioClassification.from_pretrained(directory)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, learning_rate=3e-3,
                             max_steps=6, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data.with_format("torch"),
                      eval_dataset=data.with_format("torch"), processing_class=extractor,
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_loss"])
    assert metrics["eval_loss"] < losses[0]
    trainer.save_model(str(tmp_path / "trained"))                        # Trainer's save: ssamba reads it
    x = torch.from_numpy(np.stack(data.with_format("numpy")["input_values"][:2]))
    with torch.no_grad():
        assert torch.equal(ssamba.load(tmp_path / "trained").forward_features(x), model.encoder.eval().forward_features(x))
