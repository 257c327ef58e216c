"""Fine-tuning heads: mean‖std pooling (what the head reads) and LP-FT (the head starts as a linear
probe fitted on the frozen encoder's features)."""

import pytest
import torch

import ssamba
from ssamba.data.manifests import DatasetSpec
from ssamba.downstream.finetune import FinetuneConfig, FinetuneTask, load_finetuned, save_finetuned
from ssamba.downstream.head_init import init_head_from_probe
from ssamba.downstream.probe import LinearProbe, ProbeConfig
from ssamba.errors import ConfigError
from ssamba.models import mean_std_pool


def _encoder(arch="ssast"):
    torch.manual_seed(0)
    kw = dict(depth=2, embed_dim=32, input_tdim=48, drop_path_rate=0.0)
    kw.update(scan_backend="chunked") if arch == "ssamba" else kw.update(num_heads=2)
    return ssamba.create_model(f"{arch}_tiny", **kw)


def _toy(n_per_class=12, classes=3, seed=0):
    """Fbanks whose class is a raised band of mel bins: learnable by a probe on any sensible features."""
    g = torch.Generator().manual_seed(seed)
    x, y = [], []
    for c in range(classes):
        for _ in range(n_per_class):
            fbank = 0.3 * torch.randn(48, 128, generator=g)
            fbank[:, 40 * c:40 * c + 40] += 1.5
            x.append(fbank)
            y.append(c)
    return list(zip(x, torch.nn.functional.one_hot(torch.tensor(y), classes).float()))


def test_mean_std_pool_matches_torch_std_and_has_finite_gradients():
    tokens = torch.randn(2, 1 + 10, 8)
    pooled = mean_std_pool(tokens, 1)
    patches = tokens[:, 1:]
    expected = torch.cat([patches.mean(1), patches.std(1, unbiased=False)], 1)
    assert torch.allclose(pooled, expected, atol=1e-6)
    constant = torch.ones(1, 5, 4, requires_grad=True)  # zero spread: a plain sqrt would give NaN gradients
    mean_std_pool(constant, 1).sum().backward()
    assert torch.isfinite(constant.grad).all()


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_mean_std_head_reads_mean_and_std_of_the_last_layer(arch):
    encoder = _encoder(arch).eval()
    task = FinetuneTask(encoder, 3, pooling="mean_std").eval()
    assert task.head.linear.in_features == 2 * encoder.embed_dim
    fbank = torch.randn(2, 48, 128)
    with torch.no_grad():
        patches = encoder.forward_features(fbank)[:, encoder.num_cls_tokens:]
        expected = torch.cat([patches.mean(1), patches.std(1, unbiased=False)], 1)
        assert torch.allclose(task.embed(fbank), expected, atol=1e-5)
        assert torch.allclose(task.logits(fbank), task.head.linear(task.head.norm(expected)), atol=1e-5)


def test_mean_std_pooling_is_saved_and_reloaded(tmp_path):
    task = FinetuneTask(_encoder(), 3, pooling="mean_std").eval()
    spec = DatasetSpec(name="x", class_names=["a", "b", "c"])
    save_finetuned(task, tmp_path / "m", spec, FinetuneConfig(pooling="mean_std"))
    again, meta = load_finetuned(tmp_path / "m")
    assert meta["pooling"] == again.pooling == "mean_std"
    fbank = torch.randn(2, 48, 128)
    with torch.no_grad():
        assert torch.allclose(again.logits(fbank), task.logits(fbank), atol=1e-5)


def test_unknown_pooling_and_head_init_are_refused():
    with pytest.raises(ConfigError, match="finetune.pooling='max'"):
        FinetuneConfig(pooling="max")
    with pytest.raises(ConfigError, match="finetune.head_init='zeros'"):
        FinetuneConfig(head_init="zeros")


@pytest.mark.parametrize("pooling", ["mean", "mean_std"])
def test_probe_init_sets_the_head_to_the_fitted_probe(pooling):
    data = _toy()
    task = FinetuneTask(_encoder(), 3, pooling=pooling).train()
    encoder_before = {k: v.clone() for k, v in task.encoder.state_dict().items()}
    fbanks, targets = torch.stack([x for x, _ in data]), torch.stack([y for _, y in data])
    with torch.no_grad():
        random_accuracy = (task.eval().logits(fbanks).argmax(1) == targets.argmax(1)).float().mean()
    task.train()
    init_head_from_probe(task, data, batch_size=8, weight_decay=1e-3)
    assert task.training and task.encoder.training  # the mode it had
    assert all(torch.equal(v, task.encoder.state_dict()[k]) for k, v in encoder_before.items())
    task.eval()
    with torch.no_grad():
        features = task.head.features(task.embed(fbanks))
        logits = task.logits(fbanks)
    # an independently fitted probe on the same features gives the same logits
    probe = LinearProbe(features.shape[1], 3, config=ProbeConfig(weight_decay=1e-3, standardize=False))
    probe.fit(features.double(), targets.double())
    with torch.no_grad():
        reference = probe(features.double())
    # the head holds the probe's float64 weights in float32: logits agree to float32 rounding
    assert torch.allclose(logits.double(), reference, rtol=0, atol=1e-5 * float(reference.abs().max()))
    accuracy = (logits.argmax(1) == targets.argmax(1)).float().mean()
    assert accuracy >= 0.9 and accuracy > random_accuracy + 0.3, (accuracy, random_accuracy)


def test_probe_init_for_multi_label_uses_per_class_sigmoids():
    data = [(x, y + torch.roll(y, 1)) for x, y in _toy()]  # two labels per clip
    task = FinetuneTask(_encoder(), 3, loss="bce")
    init_head_from_probe(task, data, weight_decay=1e-3)
    fbanks, targets = torch.stack([x for x, _ in data]), torch.stack([y for _, y in data])
    with torch.no_grad():
        predicted = (task.eval().scores(task.logits(fbanks)) > 0.5).float()
    assert (predicted == targets).float().mean() >= 0.9
