"""Embeddings from audio of any length: windowing, batching, pooling and timestamps.

A clip becomes normalised fbank frames in the encoder's recorded input pipeline. Clips
shorter than the encoder's window (``config.input_tdim`` frames) are padded, as the official
recipes pad (``window="padded"``, the default), or run at their own length
(``window="native"``: much less work for short clips; batches are formed by length buckets and
run with per-clip ``lengths``, so each clip gives what it gives alone); longer ones are cut
into windows of ``input_tdim`` frames with 50 % overlap, the last one padded so no tail is
lost. Windows from all clips are batched together, so the result of a clip never depends on
what it was batched with.

- scene embedding of a clip: mean over its windows of the window embedding (the official
  embedding: mean of the non-CLS tokens after the final norm);
- timestamp embeddings: one per time column of the patch grid (tokens averaged over the
  frequency rows), columns of overlapping windows averaged, one every ``tstride`` frames
  (160 ms at the pretraining geometry), stamped with the column's centre time in ms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ssamba.audio import list_audio_files, load_audio
from ssamba.config import check_choice
from ssamba.errors import AudioError, ConfigError, DataError
from ssamba.features import FeatureExtractor
from ssamba.features.extractor import feature_config_for
from ssamba.models.encoder import POOLINGS as TOKEN_POOLINGS
from ssamba.models.encoder import clip_columns, pool_tokens, pooled_dim

FRAME_SHIFT_MS = 10.0
POOLINGS = TOKEN_POOLINGS + ("per_layer",)
FRAME_LENGTH_MS = 25.0
WINDOWS = ("padded", "native")  # short clips: padded to the encoder's window, or run at their own length


def resolve_layers(layers: int | Sequence[int] | str | None, num_layers: int) -> list[int] | None:
    """``layers`` as sorted non-negative indices into ``forward_layers`` (None: the final tokens).

    Accepts an int (negative counts from the end), a list of ints, ``"all"``, or a string of
    comma-separated ints (as the CLI passes it)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        if layers.strip() == "all":
            return list(range(num_layers))
        try:
            layers = [int(part) for part in layers.split(",")]
        except ValueError:
            raise ConfigError(f"layers={layers!r}: expected 'all', an int or comma-separated ints") from None
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise ConfigError("layers=[]: name at least one layer")
    for k in chosen:
        if not -num_layers <= int(k) < num_layers:
            raise ConfigError(f"layers: {k} is out of range for an encoder with {num_layers} layers "
                              f"(SSAMBA counts flipped layer pairs)")
    return sorted({int(k) % num_layers for k in chosen})


@dataclass
class ClipWindows:
    """Where one clip's windows sit in the flat batch, and how many grid columns it owns."""

    first: int
    count: int
    num_frames: int   # real (unpadded) fbank frames of the clip
    num_columns: int  # time columns of the padded, stitched grid


class Embedder:
    """Turns waveforms into scene / timestamp embeddings with one encoder.

    ``hop_frames`` (default: half the window, rounded to the time stride) sets the overlap of
    windows over long audio. ``dtype`` is float32 or bfloat16 (autocast). ``layers`` picks which
    layer's tokens are pooled (``AudioEncoder.forward_layers``; an SSAMBA layer is a flipped
    pair): None = the final tokens (the official embedding), an int = that layer (0 = first,
    -1 = last), a list of ints = the mean of those layers' tokens, ``"all"`` = the mean of all.
    ``window``: ``"padded"`` (official: short clips padded to the window) or ``"native"``
    (short clips at their own length, batched by length with per-clip ``lengths``).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, batch_size: int = 8,
                 hop_frames: int | None = None, layers: int | Sequence[int] | str | None = None,
                 engine: str = "torch", onnx_path: str | Path | None = None, window: str = "padded") -> None:
        check_choice("window", window, WINDOWS)
        if engine == "onnxruntime":  # the encoder runs in onnxruntime; windowing/pooling as below
            from ssamba.export import OnnxEncoder
            model, device = OnnxEncoder(onnx_path if onnx_path is not None else model), "cpu"
            if layers is not None:
                raise ConfigError("layers=: an exported encoder gives its final tokens only")
            if window == "native":
                raise ConfigError("window='native': an exported encoder has a fixed window; use the torch engine")
        elif engine != "torch":
            raise ConfigError(f"engine={engine!r}: use 'torch' or 'onnxruntime'")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ConfigError(f"dtype={dtype}: use torch.float32 or torch.bfloat16")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be at least 1")
        params = list(model.parameters())  # none for an OnnxEncoder: it runs on the CPU
        self.device = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        self.dtype = dtype
        self.batch_size = batch_size
        cfg = model.config
        self.window = cfg.input_tdim
        self.tstride, self.tshape = cfg.tstride, cfg.tshape
        hop = hop_frames if hop_frames is not None else max(self.tstride, self.window // 2)
        hop = max(self.tstride, hop // self.tstride * self.tstride)  # keep window grids aligned
        if hop > self.window:
            raise ConfigError(f"hop_frames={hop_frames}: larger than the window ({self.window} frames)")
        self.hop = hop
        self.features = FeatureExtractor(dataclasses.replace(feature_config_for(model), target_length=None))
        self.pad_value = self.features.config.pad_value
        self.layers = resolve_layers(layers, model.num_layers) if layers is not None else None
        self.native = window == "native"

    @property
    def sample_rate(self) -> int:
        return self.features.config.sample_rate

    @property
    def hop_ms(self) -> float:
        """Time between consecutive timestamp embeddings."""
        return self.tstride * FRAME_SHIFT_MS

    # ---- windowing -------------------------------------------------------------------------
    def _windows(self, fbank: torch.Tensor) -> list[torch.Tensor]:
        """Cut (T, F) normalised fbank into windows of ``self.window`` frames (padded); in native
        mode a clip that fits one window is kept at its length (at least one patch)."""
        frames = fbank.shape[0]
        if self.native and frames <= self.window:
            if frames < self.tshape:
                fbank = torch.cat([fbank, fbank.new_full((self.tshape - frames, fbank.shape[1]), self.pad_value)])
            return [fbank]
        steps = 0 if frames <= self.window else math.ceil((frames - self.window) / self.hop)
        total = self.window + steps * self.hop
        if total > frames:
            pad = fbank.new_full((total - frames, fbank.shape[1]), self.pad_value)
            fbank = torch.cat([fbank, pad], dim=0)
        return [fbank[i * self.hop:i * self.hop + self.window] for i in range(steps + 1)]

    def _column_count(self, windows: list[torch.Tensor]) -> int:
        """Time columns of a clip's stitched grid: its windows' span (one window: its own length)."""
        span = windows[0].shape[0] + (len(windows) - 1) * self.hop
        return (span - self.tshape) // self.tstride + 1

    def _tokens(self, batch: torch.Tensor, every: list[torch.Tensor] | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_cls + P, D) tokens of the chosen layer(s) for a batch of windows (``every``: the
        batch's ``forward_layers``, when already computed; ``lengths``: real frames per window)."""
        if self.layers is None:
            if every is not None:
                return every[-1]
            return self.model.forward_features(batch) if lengths is None else \
                self.model.forward_features(batch, lengths=lengths)
        every = every if every is not None else self.model.forward_layers(batch, lengths=lengths)
        return torch.stack([every[i] for i in self.layers]).mean(dim=0)

    def _pool(self, tokens: torch.Tensor, pooling: str, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) official mean of the non-CLS tokens, or another ``pool_tokens`` pooling."""
        if pooling == "mean" and lengths is None:
            return self.model.pool(tokens)
        return pool_tokens(self.model, tokens.float(), pooling, lengths)

    def _columns(self, tokens: torch.Tensor, frames: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        """Per window, its time columns (t, D): tokens averaged over the frequency rows."""
        n = self.model.num_cls_tokens
        f, t = self.model.patch_grid(frames)
        if lengths is None:
            return list(tokens[:, n:].reshape(len(tokens), f, t, -1).mean(dim=1))
        columns = clip_columns(self.model.config, lengths).tolist()
        return [tokens[b, n:n + f * c].reshape(f, c, -1).mean(dim=0) for b, c in enumerate(columns)]

    def _pool_batch(self, batch: torch.Tensor, poolings: Sequence[str],
                    lengths: torch.Tensor | None = None) -> list[torch.Tensor | list[torch.Tensor]]:
        """Each pooling of one pass over a batch of windows: (B, width); (B, layers, 2D) for
        "per_layer"; for "columns", per window its (t, D) time columns (tokens averaged over
        frequency). ``lengths``: the windows' real frames (native mode), else None."""
        every = self.model.forward_layers(batch, lengths=lengths) if "per_layer" in poolings else None
        tokens = self._tokens(batch, every, lengths) if set(poolings) - {"per_layer"} else None
        out = []
        for pooling in poolings:
            if pooling == "per_layer":
                out.append(torch.stack([self._pool(t, "mean_std", lengths) for t in every], dim=1))
            elif pooling == "columns":
                out.append(self._columns(tokens, batch.shape[1], lengths))
            else:
                out.append(self._pool(tokens, pooling, lengths))
        return out

    def _batches(self, windows: list[torch.Tensor]) -> list[list[int]]:
        """Which windows run together: in order (padded mode, all one length) or, in native
        mode, by length buckets: sorted by length and cut into batches, so little is padded."""
        order = list(range(len(windows)))
        if self.native:
            order.sort(key=lambda i: windows[i].shape[0])
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _run(self, windows: list[torch.Tensor], poolings: Sequence[str]) -> list[torch.Tensor | list]:
        """Every window pooled each way, from one encoder pass: per pooling a (W, ...) tensor
        (for "columns" a list of W (t, D) tensors), in the order of ``windows``."""
        outputs: list[list] = [[None] * len(windows) for _ in poolings]
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                    if self.dtype == torch.bfloat16 else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            for chosen in self._batches(windows):
                sizes = [windows[i].shape[0] for i in chosen]
                longest = max(sizes)
                lengths = torch.tensor(sizes) if min(sizes) < longest else None  # all equal: as is
                batch = torch.stack([torch.cat([windows[i], windows[i].new_full(
                    (longest - windows[i].shape[0], windows[i].shape[1]), self.pad_value)]) for i in chosen])
                for out, pooled in zip(outputs, self._pool_batch(batch.to(self.device), poolings, lengths)):
                    for i, row in zip(chosen, pooled):
                        out[i] = row.float().cpu()
        return [out if name == "columns" else (torch.stack(out) if out else torch.zeros(0))
                for name, out in zip(poolings, outputs)]

    def _prepare(self, fbanks: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[ClipWindows]]:
        """All windows of the clips' normalised fbanks, and where each clip's windows sit."""
        windows: list[torch.Tensor] = []
        clips: list[ClipWindows] = []
        for fbank in fbanks:
            clip_windows = self._windows(fbank)
            clips.append(ClipWindows(len(windows), len(clip_windows), fbank.shape[0],
                                     self._column_count(clip_windows)))
            windows.extend(clip_windows)
        return windows, clips

    # ---- public ----------------------------------------------------------------------------
    def scene(self, waves: Sequence[torch.Tensor], pooling: str = "mean") -> torch.Tensor:
        """(n, D): per clip, the mean of its window embeddings (``pooling``: see ``scene_from_fbanks``)."""
        return self.scene_from_fbanks([self.features(wave) for wave in waves], pooling)

    def scene_from_fbanks(self, fbanks: Sequence[torch.Tensor], pooling: str | Sequence[str] = "mean"
                          ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Scene embeddings of already normalised (frames, bins) fbanks, e.g. from a feature cache.

        ``pooling="mean"``: the official embedding (n, D); ``"mean_std"``: mean and standard
        deviation of the non-CLS tokens, concatenated (n, 2D); ``"bands"``: per frequency band
        the mean over time, bands concatenated (n, bands * D) — options, not the official one;
        ``"per_layer"``: that mean‖std for every layer from one pass (n, layers, 2D), the last
        layer being the final tokens (``layers`` is ignored). One encoder pass can give several
        poolings: with a list of names, a dict name -> tensor.
        """
        names = [pooling] if isinstance(pooling, str) else list(pooling)
        for name in names:
            check_choice("pooling", name, POOLINGS)
        windows, clips = self._prepare(fbanks)
        pooled = {name: torch.stack([every[c.first:c.first + c.count].mean(dim=0) for c in clips])
                  for name, every in zip(names, self._run(windows, names))}
        return pooled[pooling] if isinstance(pooling, str) else pooled

    def timestamps(self, waves: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per clip: (T, D) embeddings of the time columns that hold audio, and (T,) centres in ms."""
        windows, clips = self._prepare([self.features(wave) for wave in waves])
        columns = self._run(windows, ["columns"])[0]  # W tensors (t, D)
        shift = self.hop // self.tstride
        results = []
        for clip in clips:
            dim = columns[clip.first].shape[1]
            total = torch.zeros(clip.num_columns, dim)
            count = torch.zeros(clip.num_columns, 1)
            for k in range(clip.count):
                window = columns[clip.first + k]
                total[k * shift:k * shift + len(window)] += window
                count[k * shift:k * shift + len(window)] += 1
            stitched = total / count
            keep = max(1, min(clip.num_columns, math.ceil(clip.num_frames / self.tstride)))
            results.append((stitched[:keep], self.column_centres_ms(keep)))
        return results

    def column_centres_ms(self, count: int) -> torch.Tensor:
        """Centre time (ms) of each time column: the mean centre of the frames it covers."""
        first_frame = torch.arange(count, dtype=torch.float64) * self.tstride
        centre_frame = first_frame + (self.tshape - 1) / 2
        return (centre_frame * FRAME_SHIFT_MS + FRAME_LENGTH_MS / 2).float()


def as_encoder(model) -> torch.nn.Module:
    """An encoder object as is, or one loaded with ``ssamba.load`` from a path."""
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        from ssamba.export import OnnxEncoder
        return OnnxEncoder(model)
    if isinstance(model, (str, Path)):
        from ssamba.models.checkpoint import load
        return load(model)
    return model


def _as_waves(sources: Iterable, sample_rate: int | None) -> list[torch.Tensor]:
    waves = []
    for source in sources:
        if isinstance(source, (str, Path)):
            waves.append(load_audio(source))
        else:
            if sample_rate is None:
                raise AudioError("arrays passed to embed() need sample_rate=")
            waves.append(load_audio(source, sample_rate=sample_rate))
    return waves


def embed(sources: Iterable, model, sample_rate: int | None = None, timestamps: bool = False,
          batch_size: int = 8, device: str | None = None, dtype: torch.dtype = torch.float32,
          layers: int | Sequence[int] | str | None = None, pooling: str = "mean", window: str = "padded"):
    """Embeddings of audio files or arrays with an encoder (or a path that ``ssamba.load`` reads).

    Returns an (n, D) numpy array of scene embeddings, or with ``timestamps=True`` a list of
    (embeddings (T, D), centre times in ms (T,)) numpy pairs, one per source. ``layers``: see
    ``Embedder`` (default: the final tokens); ``pooling`` of scene embeddings: "mean" (official),
    "mean_std" or "bands" (see ``Embedder.scene_from_fbanks``); ``window``: "padded" (official)
    or "native" (see ``Embedder``).
    """
    check_choice("pooling", pooling, TOKEN_POOLINGS)
    embedder = Embedder(as_encoder(model), device=device, dtype=dtype, batch_size=batch_size, layers=layers,
                        window=window)
    waves = _as_waves(sources, sample_rate)
    if timestamps:
        return [(e.numpy(), t.numpy()) for e, t in embedder.timestamps(waves)]
    return embedder.scene(waves, pooling).numpy()


def find_audio_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files given directly, plus audio files found recursively in given directories, sorted."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(list_audio_files(path))
        elif path.exists():
            files.append(path)
        else:
            raise AudioError(f"{path}: no such file or directory")
    return files


@dataclass
class FileEmbeddings:
    """Embeddings of the files that could be read, in input order, and those that could not."""

    files: list[Path]
    embeddings: np.ndarray | list[tuple[np.ndarray, np.ndarray]]
    skipped: list[tuple[Path, str]]


def embed_files(files: Sequence[str | Path], model, timestamps: bool = False, batch_size: int = 8,
                device: str | None = None, dtype: torch.dtype = torch.float32,
                skip_errors: bool = False, chunk: int = 64, progress: bool = True,
                layers: int | Sequence[int] | str | None = None, pooling: str = "mean",
                window: str = "padded", read: Callable[[Path], torch.Tensor] = load_audio) -> FileEmbeddings:
    """Embed audio files in order, ``chunk`` files at a time (bounded memory); ``layers``,
    ``pooling`` and ``window`` as in ``embed``; ``read`` turns an entry of ``files`` into its
    16 kHz waveform (other sources, e.g. a dataset's rows, name their entries and read them).

    An unreadable file raises its ``AudioError`` (naming the file) unless ``skip_errors``,
    in which case it is left out and listed in ``skipped`` with the reason.
    """
    from tqdm import tqdm

    check_choice("pooling", pooling, TOKEN_POOLINGS)
    embedder = Embedder(as_encoder(model), device=device, dtype=dtype, batch_size=batch_size, layers=layers,
                        window=window)
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    scene_rows: list[torch.Tensor] = []
    stamped: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=len(files), unit="file", disable=not progress, desc="embed")
    for start in range(0, len(files), chunk):
        waves, names = [], []
        for path in map(Path, files[start:start + chunk]):
            try:
                waves.append(read(path))
                names.append(path)
            except (AudioError, DataError) as exc:
                if not skip_errors:
                    bar.close()
                    raise
                skipped.append((path, str(exc)))
        if waves:
            if timestamps:
                stamped.extend((e.numpy(), t.numpy()) for e, t in embedder.timestamps(waves))
            else:
                scene_rows.append(embedder.scene(waves, pooling))
            kept.extend(names)
        bar.update(min(chunk, len(files) - start))
    bar.close()
    if timestamps:
        return FileEmbeddings(kept, stamped, skipped)
    dim = pooled_dim(embedder.model, pooling)
    matrix = torch.cat(scene_rows).numpy() if scene_rows else np.zeros((0, dim), np.float32)
    return FileEmbeddings(kept, matrix, skipped)
