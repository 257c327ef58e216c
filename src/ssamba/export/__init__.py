"""ONNX export of the encoders and an onnxruntime engine that runs them (no torch needed to run
the file; this package's engine wraps it for ``ssamba.inference.Embedder``)."""

from ssamba.export.engine import OnnxEncoder
from ssamba.export.onnx import to_onnx

__all__ = ["OnnxEncoder", "to_onnx"]
