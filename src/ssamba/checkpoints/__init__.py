"""ssamba.checkpoints: save/load self-describing checkpoints and convert official ``.pth`` files."""

from ssamba.checkpoints.convert import convert_official, infer_official_config, load_official_state
from ssamba.checkpoints.io import load, load_state, save_pretrained

__all__ = ["load", "load_state", "save_pretrained", "convert_official", "load_official_state",
           "infer_official_config"]
