"""Band pooling: per frequency band the mean over time of the tokens, bands concatenated (the
clip embedding M2D uses for patch-based encoders). Checked against the raw fbank (which band is
which), against the official mean (same tokens, other average), and through every entry point:
Embedder, one-pass multi-pooling, fine-tuning head, HEAR, ``ssamba embed --pooling``."""

import numpy as np
import pytest
import soundfile as sf
import torch
from test_inference import run_cli, tone
from tolerances import error_in_ulps, sum_ulps

import ssamba
from ssamba import hear
from ssamba.data.manifests import DatasetSpec
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, load_finetuned, save_finetuned
from ssamba.errors import ConfigError
from ssamba.inference import Embedder, embed
from ssamba.models import band_pool, pool_tokens, pooled_dim

DIM = 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssamba.create_model("ssamba_tiny", depth=2, embed_dim=DIM, input_tdim=128).eval()


def test_band_k_pools_mel_bins_16k_to_16k_plus_16_lowest_first(model):
    # raw patches stand in for tokens: each band's pooled patch must average exactly the mel bins
    # of that band over the whole clip, whatever the layout inside a patch
    fbank = torch.randn(2, 48, 128) + torch.arange(128.0) / 16   # every band at its own level
    bands = model.patch_grid(48)[0]
    pooled = band_pool(model.patchify(fbank), 0, bands).reshape(2, bands, -1)
    want = torch.stack([fbank[:, :, 16 * k:16 * k + 16].mean(dim=(1, 2)) for k in range(bands)], dim=1)
    assert bands == 8
    assert error_in_ulps(pooled.mean(-1), want) <= sum_ulps(48 * 16)


def test_bands_average_back_to_the_official_mean(model):
    waves = [torch.from_numpy(tone(1.0, 300)), torch.from_numpy(tone(3.0, 500, seed=2))]
    embedder = Embedder(model)
    bands = embedder.scene(waves, pooling="bands")
    official = embedder.scene(waves)
    assert bands.shape == (2, 8 * DIM) == (2, pooled_dim(model, "bands"))
    # every band holds the same number of time tokens, so the mean of the band means is the mean;
    # two orders of float32 sums over the 64 tokens of a window
    assert error_in_ulps(bands.reshape(2, 8, DIM).mean(1), official) <= sum_ulps(2 * 64)
    assert not torch.allclose(bands[:, :DIM], bands[:, -DIM:])   # the bands really differ


def test_one_pass_gives_each_pooling_as_separate_calls_do(model):
    fbanks = [torch.randn(90, 128), torch.randn(300, 128)]
    embedder = Embedder(model)
    together = embedder.scene_from_fbanks(fbanks, pooling=["per_layer", "bands", "mean"])
    for name in ("per_layer", "bands", "mean"):
        alone = embedder.scene_from_fbanks(fbanks, pooling=name)
        assert error_in_ulps(together[name], alone) <= sum_ulps(64), name
    with pytest.raises(ConfigError, match="pooling='max'"):
        embedder.scene_from_fbanks(fbanks, pooling=["bands", "max"])


def test_bands_head_reads_the_band_means_and_survives_save_and_reload(model, tmp_path):
    task = FinetuneTask(model, 3, pooling="bands").eval()
    assert task.head.linear.in_features == 8 * DIM
    fbank = torch.randn(2, 128, 128)
    with torch.no_grad():
        tokens = model.forward_features(fbank)[:, model.num_cls_tokens:]
        want = tokens.reshape(2, 8, 8, DIM).mean(2).flatten(1)   # frequency-major: (bands, time)
        assert error_in_ulps(task.embed(fbank), want) <= sum_ulps(8)
    save_finetuned(task, tmp_path / "m", DatasetSpec(name="x", class_names=["a", "b", "c"]),
                   FinetuneConfig(pooling="bands"))
    again, meta = load_finetuned(tmp_path / "m")
    assert meta["pooling"] == again.pooling == "bands"
    with torch.no_grad():
        assert error_in_ulps(again.logits(fbank), task.logits(fbank)) <= sum_ulps(8 * DIM)


def test_hear_and_cli_give_band_embeddings(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    hm = hear.load_model(str(tmp_path / "ckpt"), pooling="bands")
    scene = hear.get_scene_embeddings(torch.from_numpy(np.stack([tone(1.5, 300), tone(1.5, 900)])), hm)
    assert hm.scene_embedding_size == 8 * DIM and scene.shape == (2, 8 * DIM)
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.5, 300), 16000)
    proc = run_cli("--model", tmp_path / "ckpt", "--out", tmp_path / "e.npy", "--pooling", "bands", wav)
    assert proc.returncode == 0, proc.stderr
    direct = embed([wav], tmp_path / "ckpt", pooling="bands")   # the same file read (16-bit PCM, not the tone)
    assert np.load(tmp_path / "e.npy").shape == direct.shape == (1, 8 * DIM)
    assert error_in_ulps(torch.from_numpy(np.load(tmp_path / "e.npy")), torch.from_numpy(direct)) <= sum_ulps(64)


def test_bad_pooling_and_grids_are_refused(model):
    with pytest.raises(ConfigError, match="3 frequency bands"):
        band_pool(torch.randn(1, 1 + 10, 4), 1, 3)
    with pytest.raises(ConfigError, match="pooling='max'"):
        pool_tokens(model, torch.randn(1, 5, DIM), "max")
    with pytest.raises(ConfigError, match="pooling='max'"):
        pooled_dim(model, "max")
    with pytest.raises(ConfigError, match="finetune.pooling='max'"):
        FinetuneConfig(pooling="max")
