"""ssamba.nn: building blocks (selective scan, bidirectional Mamba, patch embedding, ViT block)."""

from ssamba.nn.droppath import DropPath
from ssamba.nn.mamba import BiMamba, MambaBlock
from ssamba.nn.patch import PatchEmbed, patch_grid_size, patchify, resize_pos_embed
from ssamba.nn.transformer import Attention, TransformerBlock

__all__ = ["DropPath", "BiMamba", "MambaBlock", "PatchEmbed", "patch_grid_size", "patchify",
           "resize_pos_embed", "Attention", "TransformerBlock"]
