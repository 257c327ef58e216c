"""A 1-hour file (a sparse 16 kHz int16 WAV, made in microseconds) is handled in bounded memory:
reading it costs its float32 samples once (230 MB, no float64 or multi-channel copies), and the
datasets compute features only for the frames they keep (a crop, or the first ``target_length``),
so no hour of spectra is ever built. The commands that read audio (pretrain, finetune, probe,
evaluate, demo --corpus) go through these two paths; ``shards`` packs the file's bytes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from cli_helpers import sparse_hour_wav, write_tone

from ssamba.audio import load_audio
from ssamba.cli import main
from ssamba.features import FeatureConfig, FeatureExtractor
from ssamba.features import extractor as extractor_module

HOUR = 3600 * 16000


@pytest.fixture(scope="module")
def hour_wav(tmp_path_factory):
    return sparse_hour_wav(tmp_path_factory.mktemp("huge") / "hour.wav")


def test_reading_an_hour_costs_its_samples_once(hour_wav):
    tracemalloc.start()
    try:
        wave = load_audio(hour_wav)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert wave.shape == (HOUR,) and wave.dtype == torch.float32
    # float32 samples (4 B each) + the 1-byte finiteness mask + slack; the old float64 mono mix needed ~3x
    assert peak < 5.5 * HOUR, peak / 2**20


def test_features_are_computed_for_the_kept_frames_only(monkeypatch):
    config = FeatureConfig.preset("esc50")   # target_length 512 frames
    seen = []
    real = extractor_module.kaldi_fbank_batch

    def spy(waves, **kwargs):
        seen.append(waves.shape[-1])
        return real(waves, **kwargs)

    monkeypatch.setattr(extractor_module, "kaldi_fbank_batch", spy)
    out = FeatureExtractor(config)(torch.zeros(HOUR))
    assert out.shape == (512, 128) and seen == [(512 - 1) * 160 + 400]


def test_cutting_before_the_fbank_changes_nothing():
    """The whole clip's mean is still removed (a DC offset makes a wrong mean visible), and the
    kept frames are those of the full computation."""
    config = FeatureConfig.preset("esc50")
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(20 * 16000, generator=g) + 0.3 * torch.linspace(0, 1, 20 * 16000)
    full = extractor_module.kaldi_fbank_batch(
        (wave - wave.mean())[None], sample_rate=16000, num_mel_bins=128, frame_length=25.0, frame_shift=10.0,
        window="hanning", htk_compat=True, use_energy=False, dither=0.0)[0, :512]
    want = (full - config.mean) / (2 * config.std)
    # the same float32 operations frame by frame; only the mel matmul's blocking over a different
    # frame count may round differently: a few ulps of values O(1) (1e-5 = ~80 float32 eps)
    torch.testing.assert_close(FeatureExtractor(config)(wave), want, rtol=0, atol=1e-5)


def test_training_crops_and_clips_of_an_hour(hour_wav, tmp_path):
    from ssamba.data.audio_folder import AudioCropDataset
    from ssamba.data.classification import AudioClassificationDataset
    from ssamba.data.manifests import AudioItem

    crops = AudioCropDataset([hour_wav], crop_frames=64)
    assert crops[(0, 7)]["fbank"].shape == (64, 128)
    clips = AudioClassificationDataset([AudioItem(path=hour_wav, labels=(0,))], 2,
                                       FeatureExtractor(FeatureConfig.preset("speechcommands")))
    features, target = clips[0]
    assert features.shape == (128, 128) and target.tolist() == [1.0, 0.0]


@pytest.mark.slow  # ~4 s; the quick variants are the dataset tests above
def test_probe_with_an_hour_long_clip(capsys, hour_wav, tmp_path):
    from ssamba.models import create_model

    data = tmp_path / "data"
    rows = ["path,label,fold"]
    for i, (label, fold) in enumerate([("a", 1), ("a", 2), ("b", 1), ("b", 2)]):
        name = f"{label}{fold}.wav"
        if i == 0:
            data.mkdir()
            (data / name).symlink_to(hour_wav)
        else:
            write_tone(data / name, freq=200.0 + 300 * i)
        rows.append(f"{name},{label},{fold}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    create_model("ssast_tiny", depth=1, embed_dim=48, input_tdim=128).save_pretrained(tmp_path / "m")
    code = main(["probe", "--model", str(tmp_path / "m"), "--data", str(data / "labels.csv"), "--dataset", "csv",
                 "--features", "speechcommands", "--out", str(tmp_path / "p")])
    assert code == 0, capsys.readouterr().err
    assert np.load(tmp_path / "p" / "embeddings.npz")["embeddings"].shape == (4, 48)
