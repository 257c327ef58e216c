"""Audio encoders: SSAMBA (bidirectional Mamba) and SSAST (ViT), sharing the patch/CLS/position front end.

Both reproduce the official forward passes (SiavashShams/ssamba ``AMBAModel``, YuanGongND/ssast
``ASTModel``) with parameter names equal to the official ``module.v.*`` keys minus that prefix.
Contract (docs/DEVELOPING.md): ``forward_features(fbank (B, T, F), mask, mask_embed, lengths)`` ->
tokens (B, n_cls + P, D) after the final norm; ``patchify``; ``patch_grid``; ``pool``; ``forward``.

Mixed lengths (``lengths``: real frames per clip, (B,)): each clip's tokens equal the clip run
alone. Layout: clip b's tokens are exactly the ones it would have alone, in the same order
(CLS, then its own f x t_b patch grid frequency-major), followed by padding tokens, which are
zeros in the outputs; positional embeddings are cut per clip as for a clip of t_b columns.
Only ``max(t_b)`` time columns are kept, so a batch is as long as its longest clip.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssamba.checkpoints.format import write_encoder_files
from ssamba.config import check_choice
from ssamba.errors import ConfigError
from ssamba.models.config import EncoderConfig
from ssamba.models.pooling import band_pool, mean_pool, mean_std_pool
from ssamba.nn.droppath import DropPath
from ssamba.nn.lengths import valid_mask
from ssamba.nn.mamba import BiMamba, MambaBlock
from ssamba.nn.patch import PatchEmbed, patch_grid_size, patchify, resize_pos_embed
from ssamba.nn.transformer import TransformerBlock

POOLINGS = ("mean", "mean_std", "bands")  # clip embeddings from tokens: see pool_tokens


def clip_columns(config, lengths: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """(B,) int64: time columns of each clip's patch grid, from its real frames ``lengths`` (B,)."""
    lengths = torch.as_tensor(lengths).long()
    if lengths.dim() != 1:
        raise ConfigError(f"lengths: expected one frame count per clip (B,), got shape {tuple(lengths.shape)}")
    if len(lengths) and int(lengths.min()) < config.tshape:
        raise ConfigError(f"lengths: a clip of {int(lengths.min())} frames is shorter than one patch "
                          f"({config.tshape} frames); pad short clips")
    return (lengths - config.tshape) // config.tstride + 1


def num_bands(model: nn.Module) -> int:
    """Frequency rows of an encoder's patch grid (the same for every clip length)."""
    return model.patch_grid(model.config.tshape)[0]


def pool_tokens(model: nn.Module, tokens: torch.Tensor, pooling: str = "mean",
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """A clip embedding from tokens (B, n_cls + P, D): ``"mean"`` the official (B, D), ``"mean_std"``
    (B, 2D) or ``"bands"`` (B, bands * D); ``model`` (an encoder or an ``OnnxEncoder``) gives its
    official ``pool``, the CLS count and the patch grid. ``lengths`` (B,): the clips' real frames,
    for tokens of a mixed-length batch (``forward_features(..., lengths=)``): valid tokens only."""
    check_choice("pooling", pooling, POOLINGS)
    columns = None if lengths is None else clip_columns(model.config, lengths)
    counts = None if columns is None else columns * num_bands(model)
    if pooling == "mean":
        return model.pool(tokens) if lengths is None else mean_pool(tokens, model.num_cls_tokens, counts)
    if pooling == "mean_std":
        return mean_std_pool(tokens, model.num_cls_tokens, counts)
    return band_pool(tokens, model.num_cls_tokens, num_bands(model), columns)


def pooled_dim(model: nn.Module, pooling: str = "mean") -> int:
    """Width of ``pool_tokens(model, tokens, pooling)``."""
    check_choice("pooling", pooling, POOLINGS)
    return model.config.embed_dim * {"mean": 1, "mean_std": 2, "bands": num_bands(model)}[pooling]


class AudioEncoder(nn.Module):
    """Shared front end: patch embedding, CLS token(s), positional embedding, pooling, save/load."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.embed_dim, c.fshape, c.tshape, c.fstride, c.tstride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        if c.num_cls_tokens == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_cls_tokens + c.num_patches, c.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if c.num_cls_tokens == 2:
            nn.init.trunc_normal_(self.dist_token, std=0.02)

    @staticmethod
    def from_config(config: EncoderConfig) -> "AudioEncoder":
        """Build the encoder class that ``config.arch`` names."""
        return {"ssamba": SSAMBA, "ssast": SSAST}[config.arch](config)

    @property
    def num_cls_tokens(self) -> int:
        return self.config.num_cls_tokens

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def patch_grid(self, num_frames: int, num_bins: int | None = None) -> tuple[int, int]:
        """Patch grid (frequency, time) of an input with ``num_frames`` frames (and ``num_bins`` mel bins)."""
        c = self.config
        return patch_grid_size(c.input_fdim if num_bins is None else num_bins, num_frames,
                               c.fshape, c.tshape, c.fstride, c.tstride)

    def patchify(self, fbank: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Raw input patches (B, P, fshape * tshape) in the same order as the patch tokens (with
        ``lengths``, the mixed-length layout of ``forward_features``, padding patches zero)."""
        c = self.config
        patches = patchify(fbank, c.fshape, c.tshape, c.fstride, c.tstride)
        if lengths is None:
            return patches
        grid = self.patch_grid(fbank.shape[1], fbank.shape[2])
        columns = self.clip_columns(lengths, fbank.shape[1])
        index, valid = self._clip_layout(columns, grid)
        patches = torch.gather(patches, 1, index[..., None].expand(-1, -1, patches.shape[2]))
        return torch.where(valid[..., None], patches, 0.0)

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positional embedding (1, n_cls + f*t, D) for a patch grid: cropped/interpolated from the stored one."""
        n = self.num_cls_tokens
        patches = resize_pos_embed(self.pos_embed[:, n:], self.config.grid, grid)
        return torch.cat([self.pos_embed[:, :n], patches], dim=1)

    def clip_columns(self, lengths: torch.Tensor | Sequence[int], num_frames: int | None = None) -> torch.Tensor:
        """(B,) time columns of each clip's own patch grid, from its real frames (at most ``num_frames``)."""
        lengths = torch.as_tensor(lengths).long()
        if num_frames is not None and len(lengths) and int(lengths.max()) > num_frames:
            raise ConfigError(f"lengths: a clip of {int(lengths.max())} frames is longer than the "
                              f"{num_frames}-frame input")
        return clip_columns(self.config, lengths)

    def token_lengths(self, lengths: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """(B,) tokens (CLS included) that clips of ``lengths`` frames have alone."""
        return self.num_cls_tokens + num_bands(self) * self.clip_columns(lengths)

    def _clip_layout(self, columns: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each clip's own tokens sit in the padded grid: (index, valid), both (B, f * max(columns)).

        Clip b's j-th token (frequency-major over its own f x columns[b] grid) is patch
        ``(j // columns[b]) * t + j % columns[b]`` of the padded (f, t) grid; positions past
        f * columns[b] are padding (index 0, valid False)."""
        bands, width = grid
        columns = columns.to(self.pos_embed.device)
        size = bands * int(columns.max())
        j = torch.arange(size, device=columns.device)[None, :]
        per_clip = columns[:, None]
        valid = j < bands * per_clip
        index = torch.where(valid, (j // per_clip) * width + j % per_clip, 0)
        return index, valid

    def _clip_pos_embed(self, columns: torch.Tensor, bands: int) -> torch.Tensor:
        """(B, n_cls + bands * max(columns), D): each clip's positional embedding for its own
        (bands, columns[b]) grid (as ``pos_embed_for`` cuts it for a clip alone), zero-padded."""
        widths, which = torch.unique(columns, return_inverse=True)
        size = self.num_cls_tokens + bands * int(columns.max())
        table = [F.pad(self.pos_embed_for((bands, int(t)))[0], (0, 0, 0, size - self.num_cls_tokens - bands * int(t)))
                 for t in widths]
        return torch.stack(table)[which.to(self.pos_embed.device)]

    def _check_input(self, fbank: torch.Tensor) -> None:
        c = self.config
        if fbank.dim() != 3:
            raise ConfigError(f"fbank: expected (batch, frames, mel bins), got shape {tuple(fbank.shape)}")
        if fbank.shape[1] < c.tshape or fbank.shape[2] < c.fshape:
            raise ConfigError(f"fbank: {fbank.shape[1]} frames x {fbank.shape[2]} bins is smaller than one "
                              f"{c.tshape}x{c.fshape} patch (time x freq); pad short inputs")

    def _embed(self, fbank: torch.Tensor, mask: torch.Tensor | None, mask_embed: torch.Tensor | None,
               lengths: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedded tokens, and with ``lengths`` (frames) each clip's token count (else None)."""
        self._check_input(fbank)
        x = self.patch_embed(fbank)                               # (B, P, D)
        grid = self.patch_grid(fbank.shape[1], fbank.shape[2])
        columns = None
        if lengths is not None:
            if len(lengths) != fbank.shape[0]:
                raise ConfigError(f"lengths: {len(lengths)} values for a batch of {fbank.shape[0]} clips")
            columns = self.clip_columns(lengths, fbank.shape[1]).to(x.device)
            index, valid = self._clip_layout(columns, grid)
            x = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
        if mask is not None:
            if mask_embed is None:
                raise ConfigError("forward_features: mask given without mask_embed")
            if mask.shape != x.shape[:2]:
                raise ConfigError(f"mask: expected shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
            x = torch.where(mask.unsqueeze(-1), mask_embed.to(x.dtype).expand_as(x), x)
        cls = [self.cls_token] + ([self.dist_token] if self.num_cls_tokens == 2 else [])
        x = torch.cat([t.expand(x.shape[0], -1, -1).to(x.dtype) for t in cls] + [x], dim=1)
        if columns is None:
            return x + self.pos_embed_for(grid).to(x.dtype), None
        counts = self.num_cls_tokens + grid[0] * columns
        x = x + self._clip_pos_embed(columns, grid[0]).to(x.dtype)
        return torch.where(valid_mask(counts, x.shape[1])[..., None], x, 0.0), counts

    def embed_tokens(self, fbank: torch.Tensor, mask: torch.Tensor | None = None,
                     mask_embed: torch.Tensor | None = None,
                     lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Patch embeddings (masked ones replaced by ``mask_embed``) + CLS token(s) + positional
        embedding; with ``lengths`` in the mixed-length layout (padding tokens zero)."""
        return self._embed(fbank, mask, mask_embed, lengths)[0]

    def forward_features(self, fbank: torch.Tensor, mask: torch.Tensor | None = None,
                         mask_embed: torch.Tensor | None = None,
                         lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """(B, T, F) fbank -> (B, n_cls + P, D) tokens after the final norm (official forward).

        ``lengths`` (B,): each clip's real frames (<= T; the rest of its rows is padding). Clip
        b's tokens are then its first ``token_lengths(lengths)[b]``, equal to the clip run
        alone, and P covers the longest clip only; padding tokens are zeros. ``mask`` (B, P)
        is in that layout too."""
        tokens, counts = self._embed(fbank, mask, mask_embed, lengths)
        return _zero_padding(self.encode(tokens, lengths=counts), counts)

    def forward_layers(self, fbank: torch.Tensor, mask: torch.Tensor | None = None,
                       mask_embed: torch.Tensor | None = None,
                       lengths: torch.Tensor | Sequence[int] | None = None) -> list[torch.Tensor]:
        """(B, T, F) fbank -> the tokens (B, n_cls + P, D) after every layer, shallowest first.

        SSAMBA counts a flipped layer pair as one layer (depth / 2 outputs: ``norm_f`` of the
        residual stream after the pair); SSAST counts blocks (each block's output, as the
        official SUPERB upstream returns them). The last entry always equals
        ``forward_features``, so ``[-1]`` is the official embedding's input. ``lengths``: as
        in ``forward_features``, for every layer.
        """
        tokens, counts = self._embed(fbank, mask, mask_embed, lengths)
        return [_zero_padding(t, counts) for t in self.encode(tokens, all_layers=True, lengths=counts)]

    @property
    def num_layers(self) -> int:
        """How many outputs ``forward_layers`` returns."""
        raise NotImplementedError

    def encode(self, tokens: torch.Tensor, all_layers: bool = False, lengths: torch.Tensor | None = None):
        """Run the layers on embedded tokens: final tokens, or (``all_layers``) every layer's.
        ``lengths`` (B,): valid tokens per clip (CLS included), padding after them."""
        raise NotImplementedError

    def pool(self, tokens: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Mean of the non-CLS tokens (B, D): the official clip embedding (with ``lengths``, the
        clips' real frames, of each clip's valid tokens)."""
        if lengths is None:
            return tokens[:, self.num_cls_tokens:].mean(dim=1)
        return mean_pool(tokens, self.num_cls_tokens, self.token_lengths(lengths) - self.num_cls_tokens)

    forward_head = pool

    def forward(self, fbank: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """(B, T, F) fbank -> (B, D) clip embedding (``lengths``: see ``forward_features``)."""
        return self.pool(self.forward_features(fbank, lengths=lengths), lengths)

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (atomically, file by file)."""
        write_encoder_files(directory, self.config.to_dict(), self.state_dict())

    def push_to_hub(self, repo_id: str, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str | None = None) -> str:
        """Upload config, weights and model card to the Hub repo ``repo_id`` (created if needed);
        returns the commit URL. ``ssamba.push_to_hub`` also takes folders and runs."""
        import tempfile

        from ssamba.checkpoints.card import model_card
        from ssamba.checkpoints.hub import check_repo_id, upload_folder

        check_repo_id(repo_id)
        with tempfile.TemporaryDirectory(prefix="ssamba-push-") as tmp:
            config = self.config.to_dict()
            write_encoder_files(tmp, config, self.state_dict(), card=model_card(config, repo_id=repo_id))
            return upload_folder(tmp, repo_id, private=private, token=token,
                                 commit_message=commit_message or "Upload ssamba checkpoint (an encoder)")


def _zero_padding(tokens: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
    """Tokens with each clip's positions from ``counts[b]`` on set to zero (as they are when None)."""
    if counts is None:
        return tokens
    return torch.where(valid_mask(counts, tokens.shape[1])[..., None], tokens, 0.0)


def _drop_path_rates(depth: int, rate: float, shifted: bool) -> list[float]:
    """Linear stochastic-depth rates; ``shifted`` reproduces Vim's ``[0] + linspace`` (layer i gets rate i-1)."""
    rates = torch.linspace(0, rate, depth).tolist()
    return ([0.0] + rates)[:depth] if shifted else rates


class SSAMBA(AudioEncoder):
    """Self-supervised audio Mamba encoder: 1 CLS token, bidirectional Mamba layers in flipped pairs.

    Layers run in pairs (Vim ``if_bidirectional``): layer 2i sees (hidden, residual), layer 2i+1
    sees both flipped along the sequence; their outputs (flipped back) are summed. The end is
    ``norm_f(residual + drop_path(hidden))`` and then ``norm_f`` once more, as the official code does.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        c = config
        rates = _drop_path_rates(c.depth, c.drop_path_rate, shifted=True)
        self.layers = nn.ModuleList(
            MambaBlock(c.embed_dim,
                       BiMamba(c.embed_dim, c.d_state, c.d_conv, c.expand, c.resolved_dt_rank,
                               num_layers=c.depth, scan_backend=c.scan_backend),
                       norm_eps=c.norm_eps, drop_path=rates[i])
            for i in range(c.depth))
        self.norm_f = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.drop_path = DropPath(c.drop_path_rate)

    @property
    def num_layers(self) -> int:
        return len(self.layers) // 2

    def encode(self, tokens: torch.Tensor, all_layers: bool = False, lengths: torch.Tensor | None = None):
        hidden, residual = tokens, None
        outputs = []
        for i in range(0, len(self.layers), 2):
            hidden_f, residual_f = self.layers[i](hidden, residual, lengths=lengths)
            # the official flip -> layer -> flip back, computed by the layer in reverse (no copies);
            # with lengths each clip's own tokens are flipped, as the clip alone would be
            hidden_b, residual_b = self.layers[i + 1](hidden, residual, reverse=True, lengths=lengths)
            hidden = hidden_f + hidden_b
            residual = residual_f + residual_b
            if all_layers and i + 2 < len(self.layers):
                outputs.append(self.norm_f((residual + hidden).to(self.norm_f.weight.dtype)))
        residual = residual + self.drop_path(hidden)
        hidden = self.norm_f(residual.to(self.norm_f.weight.dtype))
        final = self.norm_f(hidden)
        return outputs + [final] if all_layers else final


class SSAST(AudioEncoder):
    """Self-supervised audio spectrogram transformer: DeiT blocks, cls + dist tokens, final LayerNorm."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        c = config
        rates = _drop_path_rates(c.depth, c.drop_path_rate, shifted=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.embed_dim, c.num_heads, c.mlp_ratio, c.norm_eps, rates[i], c.attention)
            for i in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.blocks.apply(_init_vit_linear)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def encode(self, tokens: torch.Tensor, all_layers: bool = False, lengths: torch.Tensor | None = None):
        x = tokens
        outputs = []
        keys = None if lengths is None else valid_mask(lengths.to(x.device), x.shape[1])  # attend to these
        for block in self.blocks:
            x = block(x, keys)
            outputs.append(x)
        final = self.norm(x)
        return outputs[:-1] + [final] if all_layers else final


def _init_vit_linear(module: nn.Module) -> None:
    """timm ViT init: Linear weights ~ trunc_normal(0.02), biases 0 (LayerNorms stay 1/0)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
