"""AudioClassificationDataset: features through the extractor, multi-hot / mixup targets,
seeded augmentation that is reproducible per (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from dataset_layouts import write_audioset, write_speech_commands

from ssamba.data.classification import AudioClassificationDataset, multi_hot
from ssamba.data.datasets import read_audioset, read_speech_commands
from ssamba.data.manifests import AudioItem
from ssamba.errors import DataError
from ssamba.features.augment import AugmentConfig, Augmenter


def sf_loader(path):
    wave, _ = sf.read(path, dtype="float32")
    return torch.from_numpy(wave)


def frame_energy(wave: torch.Tensor) -> torch.Tensor:
    """Stand-in extractor: (frames, 4) log energies of 160-sample frames, padded to 100 frames."""
    frames = wave[: wave.numel() // 160 * 160].view(-1, 160)
    feats = torch.log(frames.pow(2).mean(dim=1, keepdim=True) + 1e-8).repeat(1, 4)
    return torch.nn.functional.pad(feats, (0, 0, 0, 100 - feats.shape[0]))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc")
    write_speech_commands(root, version=1, per_word=3, seconds=0.5)
    return read_speech_commands(root)


def test_eval_items_are_extractor_output_with_one_hot_targets(speech):
    items = speech.select("test")
    ds = AudioClassificationDataset(items, speech.spec.num_classes, frame_energy, loader=sf_loader)
    for i in (0, 7):
        features, target = ds[i]
        torch.testing.assert_close(features, frame_energy(sf_loader(items[i].path)))
        assert target.shape == (30,) and target.sum() == 1 and target[items[i].label] == 1


def test_multi_label_targets_are_multi_hot(tmp_path):
    write_audioset(tmp_path, n_train=4, n_eval=3, missing=0, seconds=0.2)
    manifest = read_audioset(tmp_path)
    ds = AudioClassificationDataset(manifest.items, manifest.spec.num_classes, frame_energy, loader=sf_loader)
    for i, item in enumerate(manifest.items):
        _, target = ds[i]
        torch.testing.assert_close(target, multi_hot(item.labels, 5))
        assert int(target.sum()) == len(item.labels)


def test_augmented_items_are_reproducible_and_mixed(speech):
    items = speech.select("train")
    config = AugmentConfig(freq_mask=2, time_mask=20, mixup_p=1.0, fbank_noise=True, time_roll=5)
    make = lambda seed: AudioClassificationDataset(  # noqa: E731
        items, speech.spec.num_classes, frame_energy, augment=Augmenter(config), loader=sf_loader,
        noise_paths=speech.noise_paths, seed=seed,
    )
    a, b = make(0), make(0)
    fa, ta = a[3]
    fb, tb = b[3]
    assert torch.equal(fa, fb) and torch.equal(ta, tb)  # same seed, epoch, index
    a.set_epoch(1)
    fc, tc = a[3]
    assert not torch.equal(fa, fc)  # a new epoch draws new augmentations
    fd, _ = make(1)[3]
    assert not torch.equal(fa, fd)
    fe, te = b[(3, 12345)]  # (index, item_seed) from the Trainer's sampler
    ff, tf = a[(3, 12345)]
    assert torch.equal(fe, ff) and torch.equal(te, tf) and not torch.equal(fe, fa)
    for ds in (a, b):
        for i in range(len(items)):
            _, target = ds[i]
            assert target.sum() == pytest.approx(1.0, abs=1e-6)  # a lambda-weighted pair
            assert target[items[i].label] > 0 and (target > 0).sum() <= 2  # own label + the partner's
    mixed_in = [(t > 0).sum() for _, t in (a[i] for i in range(len(items)))]
    assert max(mixed_in) == 2  # mixed with another class


def test_dataset_rejects_bad_items(tmp_path):
    with pytest.raises(DataError, match="no items"):
        AudioClassificationDataset([], 3, frame_energy)
    with pytest.raises(DataError, match="outside 0..2") as excinfo:
        AudioClassificationDataset([AudioItem(tmp_path / "x.wav", (3,))], 3, frame_energy)
    assert str(tmp_path / "x.wav") in str(excinfo.value)


def test_with_project_feature_extractor_and_loader(speech):
    """The default loader (ssamba.audio.load_audio) and the real FeatureExtractor, once present."""
    features_mod = pytest.importorskip("ssamba.features")
    if not hasattr(features_mod, "FeatureExtractor"):
        pytest.skip("ssamba.features.FeatureExtractor not available yet")
    extractor = features_mod.FeatureExtractor(features_mod.FeatureConfig.preset(speech.spec.feature_preset))
    config = AugmentConfig.preset("speechcommands")
    ds = AudioClassificationDataset(speech.select("train"), speech.spec.num_classes, extractor, augment=Augmenter(config))
    features, target = ds[0]
    assert features.shape == (128, 128)
    assert torch.isfinite(features).all() and target.sum() == pytest.approx(1.0)
    plain = AudioClassificationDataset(speech.select("train"), speech.spec.num_classes, extractor)
    f0, _ = plain[0]
    assert np.isfinite(f0.numpy()).all() and not torch.equal(f0, features)
