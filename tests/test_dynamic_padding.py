"""Dynamic padding in fine-tuning and probing: batches padded to their longest clip with per-clip
lengths give each clip what it gives alone (logits, gradients, embeddings), and the recipes run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dataset_layouts import class_tone, write_clip
from tolerances import assert_close_to_scale, sum_ulps

import ssamba
from ssamba.data.padding import NaturalLength, pad_collate
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, evaluate, finetune
from ssamba.downstream.probe import ProbeConfig, probe
from ssamba.features import FeatureConfig, FeatureExtractor
from ssamba.train.config import TrainConfig

torch.set_num_threads(1)
SECONDS = [0.05, 0.3, 0.71, 1.5]   # under one patch, short, a few frames past whole patches, over the window


def test_natural_length_cuts_the_fixed_features_to_the_clip():
    fixed = FeatureExtractor(FeatureConfig.preset("speechcommands"))     # 128-frame window
    natural = NaturalLength(fixed, min_frames=16)
    for seconds in SECONDS:
        wave = torch.from_numpy(class_tone(1, seconds, 16000, 0))
        got, full = natural(wave), fixed(wave)
        frames = int((len(wave) - 400) // 160 + 1) if len(wave) >= 400 else 0
        assert got.shape[0] == max(16, min(frames, 128))
        assert torch.equal(got, full[:got.shape[0]])


def test_pad_collate_pads_to_the_longest_and_adds_lengths():
    items = [(torch.ones(3, 2), torch.tensor([1.0, 0.0])), (torch.full((5, 2), 2.0), torch.tensor([0.0, 1.0]))]
    features, targets, lengths = pad_collate(items, pad_value=-1.0)
    assert features.shape == (2, 5, 2) and lengths.tolist() == [3, 5]
    assert (features[0, 3:] == -1).all() and (features[0, :3] == 1).all() and (features[1] == 2).all()
    assert targets.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("layers,pooling", [("last", "mean"), ("weighted_sum", "mean_std"), ("last", "bands")])
def test_padded_batch_logits_and_gradients_equal_each_clip_alone(layers, pooling):
    torch.manual_seed(0)
    encoder = ssamba.create_model("ssamba_tiny", depth=4, embed_dim=32, d_state=8, input_tdim=128,
                                  input_fdim=128, drop_path_rate=0.0)
    task = FinetuneTask(encoder, num_classes=3, layers=layers, pooling=pooling)
    natural = NaturalLength(FeatureExtractor(FeatureConfig.preset("speechcommands")))
    items = [(natural(torch.from_numpy(class_tone(i, s, 16000, i))), torch.eye(3)[i % 3]) for i, s in enumerate(SECONDS)]
    batch = pad_collate(items, pad_value=5.0)
    task.zero_grad()
    logits = task.logits(batch[0], batch[2])
    torch.nn.functional.cross_entropy(logits, batch[1], reduction="sum").backward()
    batched = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
    task.zero_grad()
    tokens = 1 + 8 * 8
    tol = sum_ulps(len(items) * tokens * 32, layers=4)
    for i, (features, target) in enumerate(items):
        alone = task.logits(features[None])
        assert_close_to_scale(logits[i:i + 1], alone, tol, f"logits of clip {i}")
        torch.nn.functional.cross_entropy(alone, target[None], reduction="sum").backward()
    for name, p in task.named_parameters():
        if name in batched:
            assert_close_to_scale(batched[name], p.grad, tol, f"gradient of {name}")


def _csv_dataset(root):
    lines = ["path,label,fold"]
    for c in range(2):
        for n in range(6):
            seconds = [0.2, 0.45, 0.9, 1.6][(n + c) % 4]
            write_clip(root / f"clips/{c}_{n}.wav", c * 12, seconds, seed=c * 10 + n)
            lines.append(f"clips/{c}_{n}.wav,k{c},{n % 2 + 1}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_finetune_with_dynamic_padding_trains_scores_and_evaluates_the_same(tmp_path):
    csv_path = _csv_dataset(tmp_path / "data")
    config = FinetuneConfig(dataset="csv", model="ssamba_tiny", fstride=16, tstride=16, features="speechcommands",
                            folds=[1], dynamic_padding=True,
                            model_overrides=dict(depth=2, embed_dim=32, drop_path_rate=0.0))
    train = TrainConfig(seed=0, epochs=10, max_steps=3, batch_size=4, lr=3e-3, warmup_steps=0, schedule="constant",
                        num_workers=0, num_threads=1, progress=False, tensorboard=False, checkpoint_every=10_000)
    torch.manual_seed(0)
    results = finetune(config, train, csv_path, tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "fold1" / "model" / "task.json").read_text())
    assert meta["dynamic_padding"] is True
    again = evaluate(tmp_path / "run", csv_path, tmp_path / "eval")
    assert again["runs"]["fold1"]["accuracy"] == pytest.approx(results["runs"]["fold1"]["accuracy"])


def test_probe_with_dynamic_padding_embeds_each_clip_alone(tmp_path):
    csv_path = _csv_dataset(tmp_path / "data")
    torch.manual_seed(0)
    encoder = ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=128, drop_path_rate=0.0).eval()
    probe("random-init", csv_path, tmp_path / "probe", dataset="csv", features="speechcommands", encoder=encoder,
          config=ProbeConfig(dynamic_padding=True, batch_size=4), folds=[1])
    with np.load(tmp_path / "probe" / "embeddings.npz") as cache:
        embeddings = cache["embeddings"]
    natural = NaturalLength(FeatureExtractor(FeatureConfig.preset("speechcommands")))
    from ssamba.audio import load_audio
    for i, path in enumerate(sorted((tmp_path / "data" / "clips").glob("*.wav"), key=lambda p: (p.stem[0], int(p.stem[2:])))):
        with torch.no_grad():
            alone = encoder(natural(load_audio(path))[None])
        assert_close_to_scale(torch.from_numpy(embeddings[i:i + 1]), alone, sum_ulps(65 * 32, layers=2), str(path))


# ----------------------------------------------------------------------------- pretraining crops


def test_pretraining_crops_keep_their_length_and_collate_to_the_longest(tmp_path):
    from ssamba.data.audio_folder import AudioCropDataset

    for i, seconds in enumerate([0.05, 0.3, 2.0]):
        write_clip(tmp_path / f"c{i}.wav", i, seconds, seed=i)
    fixed = AudioCropDataset(tmp_path, crop_frames=64)
    dynamic = AudioCropDataset(tmp_path, crop_frames=64, dynamic=True)
    items = [dynamic[(i, 7)] for i in range(3)]
    assert [item["fbank"].shape[0] for item in items] == [16, 28, 64]   # one patch, its own 28 frames, the crop
    for i, item in enumerate(items):
        assert torch.equal(item["fbank"], fixed[(i, 7)]["fbank"][:len(item["fbank"])])
    batch = pad_collate(items)
    assert batch["fbank"].shape == (3, 64, 128) and batch["lengths"].tolist() == [16, 28, 64]


def test_masked_pretraining_loss_on_a_padded_batch_is_the_clips_own_losses():
    from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining

    torch.manual_seed(0)
    encoder = ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, d_state=8, input_tdim=64, drop_path_rate=0.0)
    task = MaskedPatchPretraining(encoder, MaskedPatchConfig(masking="random", num_masked=None, mask_ratio=0.5,
                                                             two_pass=False))
    lengths = torch.tensor([16, 40, 64])
    fbank = torch.randn(3, 64, 128)
    task.mask_generator.manual_seed(5)
    task.zero_grad()
    batched = task({"fbank": fbank, "lengths": lengths})
    batched["loss"].backward()
    grads = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
    task.mask_generator.manual_seed(5)   # the same masks, drawn clip by clip in the same order
    task.zero_grad()
    counts = torch.tensor([8 * 1 // 2, 8 * 2 // 2, 8 * 4 // 2], dtype=torch.float32)  # half of each clip's patches
    alone = [task({"fbank": fbank[b:b + 1, :n], "lengths": lengths[b:b + 1]}) for b, n in enumerate(lengths.tolist())]
    for key in ("nce", "mse", "loss"):
        want = torch.stack([a[key] for a in alone]) @ counts / counts.sum()
        assert_close_to_scale(batched[key][None], want[None].detach(), sum_ulps(64 * 32, layers=2), key)
    (torch.stack([a["loss"] for a in alone]) @ counts / counts.sum()).backward()
    for name, p in task.named_parameters():
        if name in grads:
            assert_close_to_scale(grads[name], p.grad, sum_ulps(3 * 33 * 32 * 256, layers=2), f"gradient of {name}")


def test_pretraining_run_with_dynamic_padding(tmp_path):
    from cli_helpers import TINY_PRETRAIN

    from ssamba.cli import main
    from ssamba.train.metrics_log import read_metrics

    for i, seconds in enumerate([0.1, 0.3, 0.5, 0.9]):
        write_clip(tmp_path / "data" / f"c{i}.wav", i, seconds, seed=i)
    assert main(["pretrain", "--config", "ssamba_tiny_cpu", "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), *TINY_PRETRAIN, "train.max_steps=2",
                 "data.dynamic_padding=true", "pretrain.num_masked=null"]) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 2 and all(np.isfinite(row["loss"]) for row in rows)
