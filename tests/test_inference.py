"""Embeddings: HEAR API, windowing of long audio, batching invariance, official .pth vs converted dir, CLI."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tolerances import error_in_ulps, sum_ulps

import ssamba
from ssamba import hear
from ssamba.features import FeatureConfig, FeatureExtractor
from ssamba.inference import Embedder, embed, embed_files

OFFICIAL = Path(__file__).parent / "fixtures" / "official" / "ssamba_official.pth"
SR = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=128).eval()


def tone(seconds, freq=440.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def normalised_fbank(wave, length):
    """The documented input: preset normalisation, padded with log-mel zeros to ``length`` frames."""
    return FeatureExtractor(FeatureConfig.preset("audioset", target_length=length))(torch.from_numpy(wave))


def test_hear_api_shapes_dtypes_and_attributes(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    hm = hear.load_model(str(tmp_path / "ckpt"))
    assert hm.sample_rate == 16000 and hm.scene_embedding_size == hm.timestamp_embedding_size == 32
    audio = torch.from_numpy(np.stack([tone(2.0, 300), tone(2.0, 900)]))
    scene = hear.get_scene_embeddings(audio, hm)
    emb, ts = hear.get_timestamp_embeddings(audio, hm)
    assert scene.shape == (2, 32) and scene.dtype == torch.float32
    assert emb.shape == (2, 13, 32) and ts.shape == (2, 13) and emb.dtype == ts.dtype == torch.float32
    hop = torch.diff(ts[0])
    # 160 ms steps from 87.5 ms: exact in float32 (integers and halves below 2**23)
    assert torch.allclose(hop, torch.full_like(hop, hm.hop_ms)) and hm.hop_ms == 160.0
    assert ts[0, 0] == pytest.approx(7.5 * 10 + 12.5)  # centre of frames 0..15
    assert not torch.allclose(scene[0], scene[1])


def test_empty_path_gives_random_tiny_model_with_a_warning():
    with pytest.warns(UserWarning, match="randomly initialised"):
        hm = hear.load_model("")
    assert hm.scene_embedding_size == 192


def test_scene_embedding_is_mean_of_non_cls_tokens(model):
    wave = tone(1.0)
    (got,) = Embedder(model).scene([torch.from_numpy(wave)])
    with torch.no_grad():
        tokens = model.forward_features(normalised_fbank(wave, 128)[None])
    assert error_in_ulps(got, tokens[0, 1:].mean(0)) <= sum_ulps(64)   # a mean of 8 x 8 tokens


def test_timestamp_embeddings_are_time_columns_averaged_over_frequency(model):
    wave = tone(1.0)
    emb, ts = Embedder(model).timestamps([torch.from_numpy(wave)])[0]
    with torch.no_grad():
        tokens = model.forward_features(normalised_fbank(wave, 128)[None])[0, 1:]
    f, t = model.patch_grid(128)
    columns = tokens.reshape(f, t, -1).mean(0)
    keep = int(np.ceil(98 / 16))  # 98 frames of real audio in 1 s
    assert emb.shape == (keep, 32) and error_in_ulps(emb, columns[:keep]) <= sum_ulps(8)   # means over 8 bands


def test_long_file_is_windowed_with_overlap_and_pooled(model):
    wave = tone(60.0, 200, seed=1)
    embedder = Embedder(model)
    (scene,) = embedder.scene([torch.from_numpy(wave)])
    assert torch.isfinite(scene).all()
    full = normalised_fbank(wave, None)                       # 5998 frames
    window, hop = 128, 64
    starts = list(range(0, full.shape[0] - window + hop, hop))
    padded_len = starts[-1] + window
    assert padded_len >= full.shape[0]                        # the tail is covered
    pad = -FeatureConfig().mean / (2 * FeatureConfig().std)   # log-mel 0, normalised
    padded = torch.cat([full, full.new_full((padded_len - full.shape[0], 128), pad)])
    with torch.no_grad():
        per_window = torch.stack([model(padded[s:s + window][None])[0] for s in starts])
    # windows batched vs one by one (another BLAS blocking) through 2 layers, then a mean over them
    assert error_in_ulps(scene, per_window.mean(0)) <= sum_ulps(65 * 16 + 4 * 32, layers=2) + sum_ulps(len(starts))
    emb, ts = embedder.timestamps([torch.from_numpy(wave)])[0]
    assert emb.shape[0] == int(np.ceil(full.shape[0] / 16)) and torch.isfinite(emb).all()
    assert ts[-1] < 60_000 and torch.allclose(torch.diff(ts), torch.full((len(ts) - 1,), 160.0))


def test_batching_does_not_change_embeddings(model):
    waves = [torch.from_numpy(tone(1.0 + 0.7 * i, 200 + 100 * i, seed=i)) for i in range(8)]
    one = torch.cat([Embedder(model, batch_size=1).scene([w]) for w in waves])
    eight = Embedder(model, batch_size=8).scene(waves)
    # Embeddings are O(1) (max ~2.3): batch size may change the BLAS blocking, i.e. reduction
    # order, by a few ulps; 1e-5 abs + 1e-5 rel is ~40-80 float32 eps of them (seen: bitwise equal).
    assert torch.allclose(one, eight, atol=1e-5)


def test_official_pth_and_converted_dir_give_identical_embeddings(tmp_path):
    from ssamba.models.checkpoint import convert_official
    convert_official(OFFICIAL, tmp_path / "converted")
    waves = [tone(1.5, 500), tone(0.5, 800)]
    a = embed(waves, OFFICIAL, sample_rate=SR)
    b = embed(waves, tmp_path / "converted", sample_rate=SR)
    assert a.shape == (2, ssamba.load(OFFICIAL).embed_dim)
    np.testing.assert_array_equal(a, b)


def test_embed_files_names_and_skips(model, tmp_path):
    good = tmp_path / "a.wav"
    sf.write(good, tone(1.0), SR)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF not really audio")
    with pytest.raises(ssamba.errors.AudioError, match="b.wav"):
        embed_files([good, bad], model, progress=False)
    result = embed_files([good, bad], model, skip_errors=True, progress=False)
    assert result.files == [good] and result.embeddings.shape == (1, 32)
    assert [p for p, _ in result.skipped] == [bad]


@pytest.fixture
def audio_dir(tmp_path):
    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "one.wav", tone(1.2, 300), SR)
    sf.write(root / "sub" / "two.flac", tone(0.8, 600), SR)
    sf.write(root / "three.ogg", tone(2.0, 900), SR, format="OGG", subtype="VORBIS")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


def run_cli(*args):
    """``ssamba embed ARGS`` in this process (a subprocess costs seconds of imports; the
    ``python -m ssamba`` entry point is exercised by test_bench and test_resume)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from ssamba.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["embed", *map(str, args)])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_cli_aborts_on_a_corrupt_file_with_one_line(model, audio_dir, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    proc = run_cli("--model", tmp_path / "ckpt", "--out", tmp_path / "e.npy", audio_dir)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "broken.wav" in errors[0]
    assert not (tmp_path / "e.npy").exists()


def test_cli_skip_errors_writes_good_files_in_order(model, audio_dir, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "e.npy"
    proc = run_cli("--model", tmp_path / "ckpt", "--out", out, "--skip-errors", audio_dir)
    assert proc.returncode == 0, proc.stderr
    names = out.with_suffix(".files.txt").read_text().split()
    assert [Path(n).relative_to(audio_dir).as_posix() for n in names] == ["one.wav", "sub/two.flac", "three.ogg"]
    emb = np.load(out)
    assert emb.shape == (3, 32) and np.isfinite(emb).all()
    direct = embed([audio_dir / "one.wav"], tmp_path / "ckpt")
    assert error_in_ulps(torch.from_numpy(emb[0]), torch.as_tensor(direct[0])) <= sum_ulps(64)   # same maths, other process
    assert "broken.wav" in proc.stderr and "broken.wav" in out.with_suffix(".skipped.txt").read_text()


def test_cli_timestamps_npz(model, audio_dir, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "t.npz"
    proc = run_cli("--model", tmp_path / "ckpt", "--out", out, "--timestamps", audio_dir / "one.wav")
    assert proc.returncode == 0, proc.stderr
    data = np.load(out)
    assert list(data["names"]) == [str(audio_dir / "one.wav")]
    assert data["embeddings_0"].shape == (8, 32) and data["timestamps_ms_0"].shape == (8,)


@pytest.mark.parametrize("name", ["ssamba_tiny", "ssast_tiny"])
def test_bfloat16_embeddings_are_float32_and_close(name):
    torch.manual_seed(0)
    encoder = ssamba.create_model(name, depth=2, embed_dim=32, num_heads=2, input_tdim=128).eval()
    waves = [torch.from_numpy(tone(1.0, 300)), torch.from_numpy(tone(2.5, 700, seed=3))]
    full = Embedder(encoder).scene(waves)
    half = Embedder(encoder, dtype=torch.bfloat16).scene(waves)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    # relative to the embedding scale: bfloat16 has an 8-bit significand (eps 2**-7 = 0.0078);
    # 0.02 is ~2.5 bfloat16 eps after two layers (seen: 0.0016-0.0018 with host and AVX2 kernels)
    assert (half - full).abs().max() < 0.02 * full.abs().max()
    assert not torch.equal(half, full)  # bfloat16 really ran


def test_mean_std_pooling_extends_the_official_mean(model):
    waves = [torch.from_numpy(tone(1.0, 300)), torch.from_numpy(tone(3.0, 500, seed=2))]
    embedder = Embedder(model)
    both = embedder.scene(waves, pooling="mean_std")
    assert both.shape == (2, 64)
    assert error_in_ulps(both[:, :32], embedder.scene(waves)) <= sum_ulps(64)   # the same mean of the tokens
    with pytest.raises(ssamba.errors.ConfigError, match="pooling='max'"):
        embedder.scene(waves, pooling="max")
