"""Real Hub downloads of the authors' weights (needs the network: `pytest -m network`; the
default run and CI skip these). Each download goes to a fresh cache, so it also shows the cache
layout the offline tests imitate."""

from __future__ import annotations

import pytest
import torch

import ssamba
from ssamba.checkpoints import hub

pytestmark = pytest.mark.network


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hf"


def test_official_tiny_downloads_loads_and_embeds(fresh_cache):
    model = ssamba.load("official:ssamba_tiny_400")
    c = model.config
    assert (c.arch, c.embed_dim, c.depth, c.fshape, c.input_tdim) == ("ssamba", 192, 24, 16, 1024)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 1024, 128))).all()
    snapshots = list((fresh_cache / f"models--{hub.OFFICIAL_REPO.replace('/', '--')}" / "snapshots").glob("*/*.pth"))
    assert [p.name for p in snapshots] == ["ssamba_tiny_400.pth"] and snapshots[0].is_symlink()


def test_official_repo_lists_the_nine_checkpoints():
    files = hub.list_repo_files(hub.OFFICIAL_REPO)
    missing = sorted(set(hub.OFFICIAL_CHECKPOINTS.values()) - set(files))
    assert not missing, f"not on the Hub: {missing}"
