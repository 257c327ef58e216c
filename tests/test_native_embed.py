"""Native-length embedding (``Embedder(window="native")``, ``ssamba embed --native``).

Independent references: a clip shorter than the window embedded natively equals the encoder run
on that clip alone at its own length; a batch of 16 mixed-length clips equals batch size 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from tolerances import assert_close_to_scale, sum_ulps

import ssamba
from ssamba.cli import main
from ssamba.errors import ConfigError
from ssamba.inference import Embedder
from ssamba.models.encoder import pool_tokens

torch.set_num_threads(1)
SR = 16000
WINDOW = 128   # frames: 1.28 s
SECONDS = [0.1, 0.2, 0.33, 0.5, 0.9, 1.27, 1.3, 2.5, 0.05, 0.7, 1.0, 0.16, 0.4, 3.1, 0.25, 0.6, 1.1]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssamba.create_model("ssamba_tiny", depth=4, embed_dim=32, d_state=8, input_tdim=WINDOW,
                               drop_path_rate=0.0).eval()


def _tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _tolerance(model) -> float:
    # longest sums: a window's tokens x width through the layers, then the mean over windows' tokens
    tokens = 1 + 8 * (WINDOW // 16)
    return sum_ulps(tokens * model.config.embed_dim, layers=model.config.depth)


def test_short_clip_natively_equals_the_encoder_on_the_clip_alone(model):
    embedder = Embedder(model, window="native", batch_size=4)
    fbanks = [embedder.features(torch.from_numpy(_tone(s, i))) for i, s in enumerate([0.2, 0.5, 1.0, 0.33])]
    got = embedder.scene_from_fbanks(fbanks, ["mean", "bands", "per_layer"])
    for i, fbank in enumerate(fbanks):
        assert fbank.shape[0] < WINDOW
        with torch.no_grad():
            tokens = model.forward_features(fbank[None])
            layers = model.forward_layers(fbank[None])
        tol = _tolerance(model)
        assert_close_to_scale(got["mean"][i:i + 1], model.pool(tokens), tol, "mean")
        assert_close_to_scale(got["bands"][i:i + 1], pool_tokens(model, tokens, "bands"), tol, "bands")
        per_layer = torch.stack([pool_tokens(model, t, "mean_std") for t in layers], dim=1)
        assert_close_to_scale(got["per_layer"][i:i + 1], per_layer, tol, "per_layer")


def test_native_differs_from_padding_and_padding_stays_the_default(model):
    waves = [torch.from_numpy(_tone(0.3, 1))]
    padded = Embedder(model).scene(waves)
    assert torch.equal(padded, Embedder(model, window="padded").scene(waves))
    assert (Embedder(model, window="native").scene(waves) - padded).abs().max() > 1e-3


def test_native_batch_of_16_equals_batch_of_1_with_every_pooling_and_timestamps(model):
    waves = [torch.from_numpy(_tone(s, i)) for i, s in enumerate(SECONDS)]
    one, many = Embedder(model, window="native", batch_size=1), Embedder(model, window="native", batch_size=16)
    fbanks = [one.features(w) for w in waves]
    names = ["mean", "mean_std", "bands", "per_layer"]
    a, b = one.scene_from_fbanks(fbanks, names), many.scene_from_fbanks(fbanks, names)
    for name in names:
        assert_close_to_scale(b[name], a[name], _tolerance(model), name)
    for (e1, t1), (e16, t16) in zip(one.timestamps(waves), many.timestamps(waves)):
        assert torch.equal(t1, t16)
        assert_close_to_scale(e16, e1, _tolerance(model), "timestamps")


def test_native_timestamps_of_a_short_clip_are_its_own_columns(model):
    embedder = Embedder(model, window="native")
    wave = torch.from_numpy(_tone(0.5, 3))
    emb, times = embedder.timestamps([wave])[0]
    fbank = embedder.features(wave)
    with torch.no_grad():
        tokens = model.forward_features(fbank[None])[0, 1:]
    f, t = model.patch_grid(fbank.shape[0])
    want = tokens.reshape(f, t, -1).mean(dim=0)
    assert emb.shape == want.shape == (len(times), model.embed_dim)
    assert_close_to_scale(emb, want, _tolerance(model), "columns")


def test_cli_native_batch_16_equals_batch_1(model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, s in enumerate(SECONDS):
        sf.write(folder / f"clip{i:02d}.wav", _tone(s, i), SR)
    model.save_pretrained(tmp_path / "enc")
    outs = {}
    for size in (1, 16):
        out = tmp_path / f"b{size}.npy"
        assert main(["embed", str(folder), "--model", str(tmp_path / "enc"), "--native",
                     "--batch-size", str(size), "--out", str(out)]) == 0
        outs[size] = torch.from_numpy(np.load(out))
    assert outs[1].shape == (len(SECONDS), model.embed_dim)
    assert_close_to_scale(outs[16], outs[1], _tolerance(model), "embed --native")
    padded = tmp_path / "padded.npy"
    assert main(["embed", str(folder), "--model", str(tmp_path / "enc"), "--out", str(padded)]) == 0
    assert (torch.from_numpy(np.load(padded)) - outs[1]).abs().max() > 1e-3


def test_bad_window_names_the_choice(model):
    with pytest.raises(ConfigError, match="window"):
        Embedder(model, window="short")
