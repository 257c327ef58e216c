"""int8 dynamic quantization of an exported encoder: the large projection weights only.

Which MatMuls: those whose weight is a constant 2-D matrix — SSAMBA's in_proj / out_proj, SSAST's
qkv / proj / MLP. Everything that produces the scan's inputs stays float32: the per-direction
x_proj / dt_proj (kept by their names: they give delta, B and C), A, the softplus, the chunked
scan and its state (Mul / Add / Exp / ReduceSum, never quantized), and every activation x
activation MatMul (attention scores; their second input is not a constant). Why: rounding delta or the decays
compounds along the recurrence, while a projection's rounding error stays local (the Mamba
maintainers' advice for quantizing Mamba).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

FLOAT_SCOPES = ("x_proj", "dt_proj")   # never quantized, whatever their weight's shape


def weight_matmuls(model) -> tuple[list[str], list[str]]:
    """Names of the MatMul nodes of ``model`` (an ``onnx.ModelProto``) to quantize and to keep float."""
    ranks = {init.name: len(init.dims) for init in model.graph.initializer}
    quantize, keep = [], []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        weight_rank = ranks.get(node.input[1])
        if weight_rank == 2 and not any(scope in node.name for scope in FLOAT_SCOPES):
            quantize.append(node.name)
        else:
            keep.append(node.name)
    return quantize, keep


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Write ``source`` with int8 weights (per tensor, dynamic activations) for the projection
    MatMuls to ``target``; returns (quantized, kept float) node names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    quantize, keep = weight_matmuls(model)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # quantize_dynamic warns on the root logger to pre-process the graph
    try:
        quantize_dynamic(Path(source), Path(target), op_types_to_quantize=["MatMul"],
                         nodes_to_quantize=quantize, nodes_to_exclude=keep or None,
                         weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return quantize, keep
