"""The bundled recipes carry the official values a user compares with the paper."""

from __future__ import annotations

import pytest

from ssamba.train.config import load_yaml

PAPER_PRETRAINING = [f"{arch}_{size}" for arch in ("ssamba", "ssast") for size in ("tiny", "small", "base")]


@pytest.mark.parametrize("name", PAPER_PRETRAINING)
def test_paper_pretraining_recipes_are_official(name):
    recipe = load_yaml(name)
    train = recipe["train"]
    # official pretraining: fp32, Adam-style betas (0.95, 0.999), lr 1e-4, 64 clips per step, LR halving
    assert train["precision"] == "fp32"
    assert train["lr"] == pytest.approx(1e-4) and train["batch_size"] == 64
    assert list(train["betas"]) == [0.95, 0.999] and train["schedule"] == "plateau"
    assert recipe["data"]["crop_frames"] == 1024

