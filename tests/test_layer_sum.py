"""Weighted layer sum (s3prl ``-s hidden_states``): learned softmax weights over every layer's output,
trained with the head; gradients reach every layer weight and the fine-tuned encoder."""

import pytest
import torch

import ssamba
from ssamba.data.manifests import DatasetSpec
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, load_finetuned, save_finetuned
from ssamba.downstream.layer_sum import WeightedLayerSum, layer_embeddings
from ssamba.errors import ConfigError


def _encoder(arch):
    torch.manual_seed(0)
    kw = dict(depth=6, embed_dim=32, input_tdim=48, drop_path_rate=0.0)
    kw.update(scan_backend="chunked") if arch == "ssamba" else kw.update(num_heads=2)
    return ssamba.create_model(f"{arch}_tiny", **kw)


def test_weighted_sum_starts_as_the_mean_and_follows_its_weights():
    layers = [torch.randn(2, 5) for _ in range(3)]
    mix = WeightedLayerSum(3)
    assert torch.allclose(mix(layers), torch.stack(layers).mean(0), atol=1e-6)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.0, 30.0, 0.0]))
    assert torch.allclose(mix(layers), layers[1], atol=1e-5)
    with pytest.raises(ValueError, match="2 layer outputs"):
        mix(layers[:2])


@pytest.mark.parametrize("arch,count", [("ssamba", 3), ("ssast", 6)])
def test_gradients_reach_every_layer_weight_and_the_encoder(arch, count):
    encoder = _encoder(arch).train()
    task = FinetuneTask(encoder, 4, layers="weighted_sum")
    assert task.head.layer_sum.weights.numel() == count == encoder.num_layers
    fbank = torch.randn(2, 48, 128)
    targets = torch.nn.functional.one_hot(torch.tensor([0, 3]), 4).float()
    task((fbank, targets))["loss"].backward()
    grad = task.head.layer_sum.weights.grad
    assert grad is not None and bool((grad.abs() > 0).all()), grad
    # every layer of the encoder learns (the sum reaches the shallow layers directly)
    blocks = encoder.layers if arch == "ssamba" else encoder.blocks
    for block in blocks:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    # the layer weights train with the head (its LR multiplier)
    head_group = task.param_groups()[1]["params"]
    assert any(p is task.head.layer_sum.weights for p in head_group)


def test_logits_use_every_layer_embedding():
    encoder = _encoder("ssast").eval()
    task = FinetuneTask(encoder, 3, layers="weighted_sum").eval()
    fbank = torch.randn(2, 48, 128)
    with torch.no_grad():
        per_layer = layer_embeddings(encoder, fbank)
        expected = task.head.linear(task.head.norm(torch.stack(per_layer).mean(0)))
        assert torch.allclose(task.logits(fbank), expected, atol=1e-5)
        last = FinetuneTask(encoder, 3).eval()
        last.head.load_state_dict({k: v for k, v in task.head.state_dict().items() if not k.startswith("layer_sum")})
        assert not torch.allclose(last.logits(fbank), expected, atol=1e-3)


def test_saved_weighted_sum_reloads(tmp_path):
    task = FinetuneTask(_encoder("ssamba"), 3, layers="weighted_sum")
    with torch.no_grad():
        task.head.layer_sum.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    spec = DatasetSpec(name="x", class_names=["a", "b", "c"])
    save_finetuned(task, tmp_path / "m", spec, FinetuneConfig(layers="weighted_sum"))
    again, meta = load_finetuned(tmp_path / "m")
    assert meta["layers"] == "weighted_sum"
    assert torch.equal(again.head.layer_sum.weights, task.head.layer_sum.weights)


def test_unknown_layer_choice():
    with pytest.raises(ConfigError, match="finetune.layers='all'"):
        FinetuneConfig(layers="all")
