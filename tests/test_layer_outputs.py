"""Per-layer outputs: each intermediate output is what a truncated copy of the encoder computes."""

from __future__ import annotations

import pytest
import torch
from tolerances import error_in_ulps, sum_ulps

import ssamba

torch.set_num_threads(1)

CASES = {"ssamba": ("ssamba_tiny", dict(depth=6, embed_dim=32, input_tdim=64)),
         "ssast": ("ssast_tiny", dict(depth=3, embed_dim=32, num_heads=2, input_tdim=64))}
# Same float32 operations in both models: differences are reduction-order noise of the longest
# sums (33 tokens x 16 states or head width, the MLP's 4·32 inputs), over at most 3 layers, in
# float32 eps of the scale of the values compared.
ULPS = sum_ulps(33 * 16 + 4 * 32, layers=3)


@pytest.mark.parametrize("arch", sorted(CASES))
def test_layer_outputs_equal_truncated_encoders(arch):
    name, kw = CASES[arch]
    torch.manual_seed(0)
    model = ssamba.create_model(name, **kw).eval()
    x = torch.randn(2, 64, 128)
    with torch.no_grad():
        layers = model.forward_layers(x)
        final = model.forward_features(x)
    assert len(layers) == model.num_layers == (kw["depth"] // 2 if arch == "ssamba" else kw["depth"])
    assert torch.equal(layers[-1], final)
    final_norm = model.norm_f if arch == "ssamba" else model.norm
    for k, tokens in enumerate(layers[:-1]):
        layers_kept = 2 * (k + 1) if arch == "ssamba" else k + 1
        short = ssamba.create_model(name, **{**kw, "depth": layers_kept}).eval()
        missing, _ = short.load_state_dict(model.state_dict(), strict=False)
        assert not missing
        with torch.no_grad():
            # the truncated encoder ends with its final norm: applied to layer k's output it must agree
            assert error_in_ulps(final_norm(tokens), short.forward_features(x)) <= ULPS
            assert not torch.allclose(tokens, final, atol=1e-2)  # a different depth really differs


def test_embedder_layers_pool_the_chosen_layer_tokens():
    from ssamba.errors import ConfigError
    from ssamba.inference import Embedder

    name, kw = CASES["ssamba"]
    torch.manual_seed(0)
    model = ssamba.create_model(name, **kw).eval()
    fbanks = [torch.randn(64, 128), torch.randn(64, 128)]
    with torch.no_grad():
        every = model.forward_layers(torch.stack(fbanks))
    pooled = [model.pool(tokens) for tokens in every]
    default = Embedder(model).scene_from_fbanks(fbanks)
    assert error_in_ulps(Embedder(model, layers=-1).scene_from_fbanks(fbanks), default) <= sum_ulps(32)  # same mean
    assert error_in_ulps(Embedder(model, layers=0).scene_from_fbanks(fbanks), pooled[0]) <= ULPS
    both = Embedder(model, layers="0,2").scene_from_fbanks(fbanks)
    assert error_in_ulps(both, (pooled[0] + pooled[2]) / 2) <= ULPS
    assert error_in_ulps(Embedder(model, layers="all").scene_from_fbanks(fbanks), sum(pooled) / 3) <= ULPS
    assert error_in_ulps(pooled[0], default) > 100 * ULPS  # a shallower layer really is another embedding
    for bad in (3, -4, "x", []):
        with pytest.raises(ConfigError, match="layers"):
            Embedder(model, layers=bad)


def test_per_layer_pooling_is_every_layer_in_one_pass():
    from ssamba.inference import Embedder

    name, kw = CASES["ssamba"]
    torch.manual_seed(0)
    model = ssamba.create_model(name, **kw).eval()
    fbanks = [torch.randn(64, 128), torch.randn(100, 128)]   # the second spans two windows
    every = Embedder(model).scene_from_fbanks(fbanks, pooling="per_layer")
    assert every.shape == (2, model.num_layers, 64)
    for k in range(model.num_layers):
        one = Embedder(model, layers=k).scene_from_fbanks(fbanks, pooling="mean_std")
        assert error_in_ulps(every[:, k], one) <= ULPS
    assert error_in_ulps(every[:, -1, :32], Embedder(model).scene_from_fbanks(fbanks)) <= ULPS
