"""Dynamic padding for training: each batch padded to its longest clip, with per-clip lengths.

By default every clip is padded (or cropped) to the recipe's fixed window, as the official
recipes do. With dynamic padding a dataset yields each clip at its own length (cropped to the
window when longer; at least one patch), ``pad_collate`` pads a batch to its longest clip and
adds the clips' frame counts, and the encoders run with ``lengths=``: each clip is computed
exactly as if alone and a batch of short clips costs only their length.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ssamba.features.fbank import num_frames


def natural_frames(waveform: torch.Tensor, config, window: int, min_frames: int = 16) -> int:
    """Frames of ``waveform``'s own features, at most ``window``, at least ``min_frames`` (one patch)."""
    return max(min_frames, min(num_frames(int(waveform.shape[-1]), config.sample_rate), window))


class NaturalLength:
    """Wraps a fixed-length feature extractor: the same features cut to the clip's own frames
    (at most the extractor's ``target_length``, at least ``min_frames``: one patch, whose
    missing frames keep the extractor's padding value, as a short clip alone would get)."""

    def __init__(self, extractor: Callable[[torch.Tensor], torch.Tensor], min_frames: int = 16) -> None:
        self.extractor = extractor
        self.config = extractor.config
        self.min_frames = min_frames

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        features = self.extractor(waveform)
        return features[:natural_frames(waveform, self.config, features.shape[0], self.min_frames)]


def pad_collate(items: Sequence, pad_value: float = 0.0):
    """[(features (T_i, F), target, ...)] -> (features (B, max T_i, F), targets..., lengths (B,));
    pretraining items ``{"fbank": (T_i, F)}`` -> ``{"fbank": (B, max T_i, F), "lengths": (B,)}``.

    The padding frames hold ``pad_value``; the encoders ignore them given ``lengths``."""
    if isinstance(items[0], dict):
        fbank, lengths = pad_collate([(item["fbank"],) for item in items], pad_value)
        return {"fbank": fbank, "lengths": lengths}
    lengths = torch.tensor([item[0].shape[0] for item in items])
    longest, bins = int(lengths.max()), items[0][0].shape[1]
    features = items[0][0].new_full((len(items), longest, bins), pad_value)
    for i, item in enumerate(items):
        features[i, :item[0].shape[0]] = item[0]
    rest = [torch.utils.data.default_collate([item[k] for item in items]) for k in range(1, len(items[0]))]
    return (features, *rest, lengths)
