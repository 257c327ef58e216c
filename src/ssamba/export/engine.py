"""``OnnxEncoder``: an exported encoder run by onnxruntime behind the encoder interface that
``ssamba.inference.Embedder`` uses (config, forward_features, pool, patch_grid)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ssamba.errors import CheckpointError, ConfigError
from ssamba.features import FeatureConfig
from ssamba.models.config import EncoderConfig
from ssamba.nn.patch import patch_grid_size


class OnnxEncoder(torch.nn.Module):
    """Runs ``tokens, embedding = graph(fbank)`` in an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, memory_arena: bool = True) -> None:
        """``memory_arena=False`` frees activations after each run (slower; lets a benchmark read
        the peak of one run)."""
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError(f"engine onnxruntime needs: pip install 'ssamba[export]' ({exc})") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.enable_cpu_mem_arena = memory_arena
        try:
            self.session = self._session(ort, options)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if "ssamba.encoder_config" not in meta:
            raise CheckpointError(f"{self.path}: no ssamba.encoder_config metadata (not exported by ssamba)")
        self.config = EncoderConfig.from_dict(json.loads(meta["ssamba.encoder_config"]))
        self.feature_config = FeatureConfig.from_dict(json.loads(meta["ssamba.features"]))
        self.config.features = self.feature_config  # Embedder reads the pipeline from the config

    def _session(self, ort, options):
        """A CPU session, loaded once: a graph that ``to_onnx`` optimised offline (metadata
        ``ssamba.optimized``) is not optimised again; any other graph is, at onnxruntime's default level."""
        offline = options.graph_optimization_level
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        if session.get_modelmeta().custom_metadata_map.get("ssamba.optimized"):
            return session
        options.graph_optimization_level = offline
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    @property
    def num_cls_tokens(self) -> int:
        return self.config.num_cls_tokens

    def patch_grid(self, num_frames: int, num_bins: int | None = None) -> tuple[int, int]:
        c = self.config
        return patch_grid_size(c.input_fdim if num_bins is None else num_bins, num_frames,
                               c.fshape, c.tshape, c.fstride, c.tstride)

    def run(self, fbank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, frames, bins) float32 -> tokens (batch, T, D), embedding (batch, D)."""
        c = self.config
        if fbank.ndim != 3 or fbank.shape[1:] != (c.input_tdim, c.input_fdim):
            raise ConfigError(f"{self.path}: input must be (batch, {c.input_tdim}, {c.input_fdim}), "
                              f"got {tuple(fbank.shape)}")
        tokens, embedding = self.session.run(None, {"fbank": np.ascontiguousarray(fbank, dtype=np.float32)})
        return tokens, embedding

    def forward_features(self, fbank: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(fbank.detach().float().cpu().numpy())[0])

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(fbank.detach().float().cpu().numpy())[1])

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The official embedding: mean of the non-CLS tokens (as the graph's ``embedding``)."""
        return tokens[:, self.num_cls_tokens:].mean(dim=1)
