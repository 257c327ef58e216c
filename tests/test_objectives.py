"""InfoNCE / MSE objectives and the pretraining task."""

import math

import torch
from pretrain_helpers import synthetic_fbank, tiny_encoder

from ssamba.pretrain.objectives import info_nce, patch_mse
from ssamba.pretrain.task import MaskedPatchConfig, MaskedPatchPretraining


def test_info_nce_hand_computed():
    # one clip, two masked patches, 2-dim "patches"
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    # scores[i, j] = target_i . pred_j = [[1, 2], [0, 2]]
    # log-softmax over j: row0: 1 - log(e^1 + e^2); row1: 2 - log(e^0 + e^2)
    expected = -0.5 * ((1 - math.log(math.e + math.e ** 2)) + (2 - math.log(1 + math.e ** 2)))
    loss, acc = info_nce(pred, target)
    assert abs(loss.item() - expected) < 1e-6
    # official accuracy: softmax each row over j, then per column j the argmax over rows i.
    # row-softmax = [[0.269, 0.731], [0.119, 0.881]]: col0 -> i=0 (ok), col1 -> i=1 (ok). (An argmax over
    # the raw scores would see a tie [2, 2] in col1 and count it wrong: 0.5.)
    assert acc.item() == 1.0


def test_info_nce_matches_per_clip_loop():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    total, correct = 0.0, 0
    for b in range(3):
        s = target[b] @ pred[b].T
        total += torch.diag(torch.log_softmax(s, -1)).sum().item()
        correct += (torch.softmax(s, -1).argmax(0) == torch.arange(5)).sum().item()  # the official count
    loss, acc = info_nce(pred, target)
    assert abs(loss.item() + total / 15) < 1e-5
    assert abs(acc.item() - correct / 15) < 1e-6
    perfect = torch.eye(5).repeat(2, 1, 1) * 50
    assert info_nce(perfect, perfect)[1].item() == 1.0 and info_nce(perfect, perfect)[0].item() < 1e-6


def test_mse():
    assert patch_mse(torch.ones(1, 2, 3), torch.zeros(1, 2, 3)).item() == 1.0


def test_task_joint_loss_and_official_names():
    torch.manual_seed(0)
    task = MaskedPatchPretraining(tiny_encoder(), MaskedPatchConfig(num_masked=20), seed=0)
    names = dict(task.named_parameters())
    assert names["mask_embed"].shape == (1, 1, 32)
    assert names["cpredlayer.0.weight"].shape == (32, 32) and names["cpredlayer.2.weight"].shape == (256, 32)
    assert names["gpredlayer.2.bias"].shape == (256,)
    out = task(synthetic_fbank(2, 64))
    assert abs(out["loss"].item() - (out["nce"].item() + 10 * out["mse"].item())) < 1e-4
    assert 0.0 <= out["acc"].item() <= 1.0
    task.eval()  # no drop path: the only randomness left is the mask generator
    # same seed -> same masks -> same loss; two-pass vs single-pass differ in masks used for mse
    task.mask_generator.manual_seed(5)
    a = task(synthetic_fbank(2, 64))["loss"].item()
    task.mask_generator.manual_seed(5)
    b = task(synthetic_fbank(2, 64))["loss"].item()
    assert a == b
    task.config.two_pass = False
    task.mask_generator.manual_seed(5)
    single = task(synthetic_fbank(2, 64))
    task.mask_generator.manual_seed(5)
    task.config.two_pass = True
    double = task(synthetic_fbank(2, 64))
    assert single["nce"].item() == double["nce"].item()  # first pass uses the same mask
    assert single["mse"].item() != double["mse"].item()  # second pass: fresh mask


def test_masked_positions_get_mask_embed_and_unmasked_predictions_ignored():
    # changing an unmasked patch's input changes the loss only through context, but changing the
    # value hidden under a mask must not change what the encoder sees (only the targets)
    torch.manual_seed(0)
    task = MaskedPatchPretraining(tiny_encoder(), MaskedPatchConfig(num_masked=30, objective="mse"), seed=3)
    x = synthetic_fbank(1, 64)
    task.eval()
    enc = task.encoder
    grid = enc.patch_grid(64)
    from ssamba.pretrain.masking import batch_masks
    idx, mask = batch_masks(1, grid, 30, "cluster", torch.Generator().manual_seed(7))
    tokens_a = enc.forward_features(x, mask=mask, mask_embed=task.mask_embed)
    y = x.clone()
    f, t = divmod(int(idx[0, 0]), grid[1])
    y[0, t * 16:(t + 1) * 16, f * 16:(f + 1) * 16] += 5.0  # perturb a masked patch (time x freq layout)
    tokens_b = enc.forward_features(y, mask=mask, mask_embed=task.mask_embed)
    assert torch.allclose(tokens_a, tokens_b, atol=1e-5)
    assert not torch.allclose(enc.patchify(x), enc.patchify(y))
