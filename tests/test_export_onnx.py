"""ONNX export: onnxruntime embeddings equal the torch ones (float32), int8 stays close, the CLI
and the Embedder engine work."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from tolerances import error_in_ulps, sum_ulps  # noqa: E402

import ssamba  # noqa: E402
from ssamba.cli import main  # noqa: E402
from ssamba.export import OnnxEncoder, to_onnx  # noqa: E402
from ssamba.inference import Embedder  # noqa: E402
from ssamba.models.registry import create_model  # noqa: E402

OFFICIAL = Path(__file__).parent / "fixtures" / "official"


def parity_ulps(model) -> float:
    """float32 parity: the graph is the same eager maths with the closed-form chunked scan; the sums
    are reordered, so differences are float32 rounding of the longest sums (tokens x 16 states or
    head width, the MLP's 4·D inputs), compounded over the layers (tests/tolerances.py)."""
    c = model.config
    f, t = model.patch_grid(c.input_tdim)
    return sum_ulps((f * t + model.num_cls_tokens) * 16 + 4 * c.embed_dim, layers=c.depth)


def _check_parity(model, path, batches=(1, 4)):
    model.eval()
    engine = OnnxEncoder(to_onnx(model, path))
    c = model.config
    for b in batches:
        x = torch.randn(b, c.input_tdim, c.input_fdim, generator=torch.Generator().manual_seed(b))
        with torch.no_grad():
            want_tokens = model.forward_features(x)
        tokens, emb = engine.run(x.numpy())
        assert error_in_ulps(torch.from_numpy(tokens), want_tokens) <= parity_ulps(model)
        assert error_in_ulps(torch.from_numpy(emb), model.pool(want_tokens)) <= parity_ulps(model)
    return engine


@pytest.mark.parametrize("name", ["ssamba_tiny", "ssast_tiny"])
def test_random_encoder_parity(name, tmp_path):
    torch.manual_seed(0)
    _check_parity(create_model(name, depth=2, input_tdim=64), tmp_path / "m.onnx")


def test_saved_pretrained_parity_and_metadata(tmp_path):
    torch.manual_seed(1)
    model = create_model("ssamba_tiny", depth=2, input_tdim=48)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = ssamba.load(tmp_path / "ckpt")
    engine = _check_parity(loaded, tmp_path / "m.onnx", batches=(4,))
    assert engine.config.input_tdim == 48 and engine.config.depth == 2


@pytest.mark.parametrize("arch", ["ssamba", "ssast"])
def test_official_pth_parity(arch, tmp_path):
    model = ssamba.load(OFFICIAL / f"{arch}_official.pth")
    _check_parity(model, tmp_path / "m.onnx", batches=(1, 4))


def test_swapped_scan_directions_are_detected(tmp_path):
    """Export, then swap the forward/backward branches in torch: the ONNX output must no longer match."""
    torch.manual_seed(2)
    model = create_model("ssamba_tiny", depth=2, input_tdim=32).eval()
    engine = OnnxEncoder(to_onnx(model, tmp_path / "m.onnx"))
    x = torch.randn(1, 32, model.config.input_fdim)
    with torch.no_grad():
        for layer in model.modules():
            if hasattr(layer, "A_b_log"):
                for a, b in (("A_log", "A_b_log"), ("D", "D_b")):
                    pa, pb = getattr(layer, a), getattr(layer, b)
                    tmp = pa.clone()
                    pa.copy_(pb)
                    pb.copy_(tmp)
                for a, b in (("conv1d", "conv1d_b"), ("x_proj", "x_proj_b"), ("dt_proj", "dt_proj_b")):
                    ma, mb = getattr(layer, a), getattr(layer, b)
                    for pa, pb in zip(ma.parameters(), mb.parameters()):
                        tmp = pa.clone()
                        pa.copy_(pb)
                        pb.copy_(tmp)
        swapped = model(x).numpy()
    assert error_in_ulps(torch.from_numpy(engine.run(x.numpy())[1]), torch.from_numpy(swapped)) > 100 * parity_ulps(model)


@pytest.mark.slow
def test_full_tiny_int8_size_and_load(tmp_path):
    torch.manual_seed(3)
    model = create_model("ssamba_tiny").eval()
    model.save_pretrained(tmp_path / "ckpt")
    fp32 = to_onnx(model, tmp_path / "fp32.onnx")
    int8 = to_onnx(model, tmp_path / "int8.onnx", quantize="int8")
    weights = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert fp32.stat().st_size < 2 * weights
    assert int8.stat().st_size < fp32.stat().st_size
    start = time.perf_counter()
    e32 = OnnxEncoder(fp32)
    load_s = time.perf_counter() - start
    print(f"fp32 {fp32.stat().st_size/2**20:.1f} MiB, int8 {int8.stat().st_size/2**20:.1f} MiB, "
          f"safetensors {weights/2**20:.1f} MiB, load {load_s:.2f} s")
    assert load_s < 5.0   # the bound; measured 0.9-1.2 s on a shared 2-core EPYC
    e8 = OnnxEncoder(int8)
    x = torch.randn(2, model.config.input_tdim, model.config.input_fdim).numpy()
    a, b = e32.run(x)[1], e8.run(x)[1]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # int8 weights carry ~2**-8 relative error each; through 24 layers the embedding's direction
    # moves by a few % at most, while a broken quantisation gives an unrelated vector (cos ~ 0)
    assert cos.min() >= 0.99


def test_cli_and_embedder_engine(tmp_path, capsys):
    torch.manual_seed(4)
    model = create_model("ssamba_tiny", depth=2, input_tdim=32)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "ckpt"), str(out), "--frames", "48"]) == 0
    assert main(["export", str(tmp_path / "missing"), str(out)]) == 2
    fbanks = [torch.randn(100, model.config.input_fdim), torch.randn(20, model.config.input_fdim)]
    loaded = ssamba.load(tmp_path / "ckpt", input_tdim=48)
    want = Embedder(loaded).scene_from_fbanks(fbanks)
    got = Embedder(None, engine="onnxruntime", onnx_path=out).scene_from_fbanks(fbanks)
    assert error_in_ulps(got, want) <= parity_ulps(loaded)


# The float MatMuls an int8 export must keep (they produce delta, B and C; attention scores are
# activation x activation) and the projections it must quantize, per architecture.
INT8_CASES = {"ssamba_tiny": ({"x_proj/MatMul", "x_proj_b/MatMul", "dt_proj/MatMul", "dt_proj_b/MatMul"},
                              {"in_proj", "out_proj"}),
              "ssast_tiny": ({"MatMul", "MatMul_1"}, {"qkv", "proj", "fc1", "fc2"})}


@pytest.mark.parametrize("name", sorted(INT8_CASES))
def test_int8_quantizes_projections_only(name, tmp_path):
    import onnx

    torch.manual_seed(5)
    depth = 2
    model = create_model(name, depth=depth, input_tdim=64).eval()
    fp32 = to_onnx(model, tmp_path / "fp32.onnx")
    int8 = to_onnx(model, tmp_path / "int8.onnx", quantize="int8")
    graph = onnx.load(str(int8)).graph
    dtypes = {i.name: i.data_type for i in graph.initializer}
    float_scopes, quant_scopes = INT8_CASES[name]
    kept = [n for n in graph.node if n.op_type == "MatMul"]
    assert sorted(n.name.split("/", 3)[3] for n in kept) == sorted(list(float_scopes) * depth)
    assert all(dtypes.get(n.input[1], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for n in kept)
    quantized = [n for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert sorted(n.name.split("/")[3] for n in quantized) == sorted(list(quant_scopes) * depth)
    assert all(dtypes[n.input[1]] == onnx.TensorProto.INT8 for n in quantized)
    assert int8.stat().st_size < 0.8 * fp32.stat().st_size
    x = torch.randn(4, 64, model.config.input_fdim, generator=torch.Generator().manual_seed(0)).numpy()
    a, b = OnnxEncoder(fp32).run(x)[1], OnnxEncoder(int8).run(x)[1]
    assert np.abs(a - b).max() > 1e-6   # the weights really changed
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99
