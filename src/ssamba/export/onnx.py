"""``to_onnx``: an encoder as an ONNX graph from normalised fbank windows to tokens and embedding.

Graph: input ``fbank`` (batch, frames, bins) float32, batch dynamic, frames fixed (the
checkpoint's ``input_tdim`` unless given); outputs ``tokens`` (batch, n_cls + patches, D) after
the final norm and ``embedding`` (batch, D), the official mean of the non-CLS tokens.
The SSAMBA mixer is traced through its token-major export path (``ssamba.nn.mamba_export``,
with the closed-form chunked scan of ``ssamba.nn.scan_export``), picked automatically while
tracing. Metadata: ``ssamba.encoder_config`` (JSON, ``input_tdim`` = the exported window) and
``ssamba.features`` (JSON feature config), so a reader can rebuild the input pipeline.
``quantize="int8"``: dynamic int8 quantization of the projection MatMul weights only
(``ssamba.export.quantize``); x_proj / dt_proj, the scan, A, delta and the state stay float32.
The file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from ssamba.checkpoints.format import atomic_write
from ssamba.errors import ConfigError
from ssamba.export.quantize import quantize_int8
from ssamba.features.extractor import feature_config_for
from ssamba.models.checkpoint import load

DEFAULT_OPSET = 17
QUANTIZATIONS = ("int8",)
META_CONFIG, META_FEATURES = "ssamba.encoder_config", "ssamba.features"
META_OPTIMIZED = "ssamba.optimized"   # "basic" / "extended": optimised offline at that level, load it as is


class _Graph(torch.nn.Module):
    """fbank -> (tokens, embedding): the two outputs of the exported graph."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.encoder.forward_features(fbank)
        return tokens, self.encoder.pool(tokens)


def _import_onnx():
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs onnx and onnxruntime: pip install 'ssamba[export]' ({exc})") from exc
    return onnx


def _optimize_offline(source: Path, target: Path, level: str) -> None:
    """Apply onnxruntime's ``basic`` (constant folding, redundant-node removal) or ``extended``
    (also fusions into onnxruntime's own ops) graph optimisations and save the result, so sessions
    skip optimising at load time. Never ``all``: its layout changes are specific to this CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def to_onnx(model, path: str | os.PathLike, frames: int | None = None, opset: int = DEFAULT_OPSET,
            quantize: str | None = None) -> Path:
    """Export ``model`` (an encoder, a checkpoint dir or an official .pth) to ``path``; returns it."""
    onnx = _import_onnx()
    if quantize not in (None, *QUANTIZATIONS):
        raise ConfigError(f"quantize={quantize!r}: choose one of {', '.join(QUANTIZATIONS)} or none")
    encoder = load(model) if isinstance(model, (str, os.PathLike)) else model
    was_training = encoder.training
    encoder.float().eval()
    cfg = encoder.config
    frames = int(frames or cfg.input_tdim)
    if frames < cfg.tshape:
        raise ConfigError(f"frames={frames}: shorter than one patch ({cfg.tshape} frames)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, frames, cfg.input_fdim)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # tracer warnings about Python ints from shapes
            # the wrapper is put in eval mode first: export restores the mode it found, recursively
            torch.onnx.export(_Graph(encoder).eval(), (dummy,), str(raw), input_names=["fbank"],
                              output_names=["tokens", "embedding"], opset_version=opset,
                              dynamic_axes={"fbank": {0: "batch"}, "tokens": {0: "batch"},
                                            "embedding": {0: "batch"}},
                              do_constant_folding=True, dynamo=False)
        encoder.train(was_training)
        # The traced graph is mostly shape bookkeeping (tens of thousands of nodes for a full model):
        # optimise it once here, so that loading the file is fast (measured: 45 s -> ~1 s for tiny)
        optimized = Path(tmp) / "basic.onnx"
        _optimize_offline(raw, optimized, "basic")
        level = "basic"
        if quantize == "int8":
            # int8: the extended level fuses each DynamicQuantizeLinear + MatMulInteger + scale Mul
            # into one DynamicQuantizeMatMul (measured: the unfused int8 graph ran slower than float32)
            quantized, optimized, level = Path(tmp) / "int8.onnx", Path(tmp) / "int8-extended.onnx", "extended"
            quantize_int8(Path(tmp) / "basic.onnx", quantized)
            _optimize_offline(quantized, optimized, level)
        graph = onnx.load(str(optimized))
        meta = {META_CONFIG: json.dumps(dataclasses.replace(cfg, input_tdim=frames).to_dict()),
                META_FEATURES: json.dumps(dataclasses.asdict(feature_config_for(encoder))),
                META_OPTIMIZED: level}
        del graph.metadata_props[:]
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=value)
        graph.producer_name = "ssamba"
        atomic_write(path, lambda tmp_file: onnx.save(graph, tmp_file))
    return path
