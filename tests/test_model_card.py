"""Model cards: every saved checkpoint folder carries README.md whose Hub metadata (read back with
huggingface_hub's own parser) names the library, tags, pipeline and licence, and whose body holds
the config; a run's record is read from its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import ssamba
from ssamba.checkpoints.card import model_card, run_record
from ssamba.cli import main as cli_main

FIX = Path(__file__).parent / "fixtures" / "official"


@pytest.mark.parametrize("arch,mixer_tag", [("ssamba", "mamba"), ("ssast", "transformer")])
def test_saved_checkpoint_has_a_card_with_hub_metadata(arch, mixer_tag, tmp_path):
    overrides = dict(depth=2, embed_dim=32, input_tdim=64) | ({"num_heads": 2} if arch == "ssast" else {})
    model = ssamba.create_model(f"{arch}_tiny", **overrides)
    ssamba.models.save_pretrained(model, tmp_path / "ckpt")
    card = ModelCard.load(tmp_path / "ckpt" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "ssamba" and data["license"] == "bsd-3-clause"
    assert data["pipeline_tag"] == "feature-extraction"
    assert {"audio", mixer_tag, "self-supervised", "arxiv:2405.11831"} <= set(data["tags"])
    assert "| embed_dim | 32 |" in card.text and "| depth | 2 |" in card.text and "| input_tdim | 64 |" in card.text


def test_converted_official_checkpoint_has_a_card(tmp_path, capsys):
    assert cli_main(["convert", str(FIX / "ssamba_official.pth"), str(tmp_path / "out")]) == 0
    capsys.readouterr()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "| embed_dim | 64 |" in card.text and "| depth | 4 |" in card.text


def test_card_for_a_finetuned_model_and_run_record(tmp_path):
    assert run_record(tmp_path) is None   # not inside a run
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "results.json").write_text(json.dumps({
        "dataset": "esc50", "runs": {"fold1": {"accuracy": 0.75}, "fold2": {"accuracy": 0.85}},
        "aggregate": {"accuracy": {"mean": 0.8, "std": 0.07, "n": 2}}, "init": "official:ssamba_tiny_400"}))
    record = run_record(tmp_path / "run" / "model")
    assert record["results"]["runs"]["mean"] == {"accuracy": 0.8} and record["init"] == "official:ssamba_tiny_400"
    text = model_card({"arch": "ssamba", "embed_dim": 192}, run=record, task={"dataset": "esc50", "class_names": ["a"]},
                      repo_id="me/esc")
    card = ModelCard(text)
    assert card.data.pipeline_tag == "audio-classification"
    assert "| fold2 | accuracy | 0.85 |" in text and "| mean | accuracy | 0.8 |" in text
    assert 'ssamba.load("hf://me/esc")' in text and "initialised from: official:ssamba_tiny_400" in text


def test_run_record_of_a_demo_encoder_and_of_broken_files(tmp_path):
    """The demo's encoder sits in its pretraining run (metrics.csv) under a results.json of another
    shape; a corrupt results.json leaves only its part out."""
    encoder = tmp_path / "demo_out" / "ssamba" / "encoder"
    encoder.mkdir(parents=True)
    (tmp_path / "demo_out" / "ssamba" / "metrics.csv").write_text("step,epoch,loss,acc\n12,0,3.5,0.25\n")
    (tmp_path / "demo_out" / "results.json").write_text(json.dumps({"results": [{"task": "word", "accuracy": 0.2}]}))
    assert run_record(encoder) == {"steps": 12, "losses": {"loss": 3.5, "acc": 0.25}}
    (tmp_path / "demo_out" / "results.json").write_text("{not json")
    assert run_record(encoder) == {"steps": 12, "losses": {"loss": 3.5, "acc": 0.25}}
