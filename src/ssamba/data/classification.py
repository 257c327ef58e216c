"""The torch `Dataset` of labelled audio: manifest items -> (normalised fbank, target) pairs, with
waveform and fbank augmentation seeded per item (see ``AudioClassificationDataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ssamba.data.manifests import AudioItem
from ssamba.data.seeding import item_seed
from ssamba.errors import DataError


def multi_hot(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Float target vector with 1 at every label (one-hot for a single label)."""
    target = torch.zeros(num_classes, dtype=torch.float32)
    target[list(labels)] = 1.0
    return target


class AudioClassificationDataset(Dataset):
    """Manifest items -> (features (T, F) float32, target (num_classes,) float32).

    `extractor` maps a 16 kHz waveform to features (normally
    `FeatureExtractor(FeatureConfig.preset(spec.feature_preset))`). `augment` (an
    `ssamba.features.augment.Augmenter`, or None for evaluation) adds waveform augmentation
    (mixup with a random other item, as the official recipe does, gain, background noise)
    and fbank augmentation (SpecAugment, fbank noise, time roll). Targets are multi-hot
    (one-hot for single-label data); with mixup they are the lambda-weighted mix. Randomness
    comes from a generator seeded by (seed, epoch, index) (call `set_epoch` each epoch), or by
    the item seed when indexed with the Trainer's (index, item_seed) pairs.
    """

    def __init__(
        self,
        items: Sequence[AudioItem],
        num_classes: int,
        extractor: Callable[[torch.Tensor], torch.Tensor],
        augment=None,
        loader: Callable[[Path], torch.Tensor] | None = None,
        noise_paths: Sequence[Path] = (),
        seed: int = 0,
    ) -> None:
        if not items:
            raise DataError("AudioClassificationDataset: no items")
        for item in items:
            bad = [label for label in item.labels if not 0 <= label < num_classes]
            if bad:
                raise DataError(f"{item.path}: label index {bad[0]} outside 0..{num_classes - 1}")
        self.items = list(items)
        self.num_classes = num_classes
        self.extractor = extractor
        self.augment = augment
        self.loader = loader
        self.noise_paths = list(noise_paths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random augmentations are drawn (reproducible per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, source: AudioItem | Path) -> torch.Tensor:
        if isinstance(source, AudioItem):
            if source.audio is not None:   # an in-memory item (a datasets row) decodes itself
                return torch.as_tensor(source.audio(), dtype=torch.float32)
            source = source.path
        if self.loader is None:
            from ssamba.audio import load_audio  # the project's loader: mono float32 at 16 kHz

            self.loader = load_audio
        return torch.as_tensor(self.loader(source), dtype=torch.float32)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`key`: an index (augmentation seeded by (seed, epoch, index)) or an (index, item_seed)
        pair as yielded by the Trainer's EpochSampler."""
        index, seed = (key[0], key[1]) if isinstance(key, (tuple, list)) else (key, None)
        item = self.items[index]
        waveform = self._load(item)
        target = multi_hot(item.labels, self.num_classes)
        if self.augment is not None:
            seed = item_seed(self.seed, self.epoch, index) if seed is None else int(seed)
            generator = torch.Generator().manual_seed(seed)
            if self.augment.wants_mixup(generator):
                other = self.items[int(torch.randint(len(self.items), (1,), generator=generator))]
                waveform, target = self.augment.mixup_pair(
                    waveform, self._load(other), target, multi_hot(other.labels, self.num_classes), generator
                )
            noise = None
            if self.noise_paths and self.augment.wants_background_noise(generator):
                noise = self._load(self.noise_paths[int(torch.randint(len(self.noise_paths), (1,), generator=generator))])
            waveform = self.augment.augment_waveform(waveform, generator, noise=noise)
            features = self.augment.augment_features(self.extractor(waveform), generator)
        else:
            features = self.extractor(waveform)
        return features.float(), target
