"""The on-disk checkpoint format (files only; ``ssamba.models.checkpoint`` builds encoders from it)."""

from ssamba.checkpoints.format import (
                                       CARD_FILE,
                                       CONFIG_FILE,
                                       EXTRA_FILE,
                                       WEIGHTS_FILE,
                                       atomic_write,
                                       atomic_write_text,
                                       read_encoder_files,
                                       resolve_run_dir,
                                       write_encoder_files,
)

__all__ = ["CARD_FILE", "CONFIG_FILE", "EXTRA_FILE", "WEIGHTS_FILE", "atomic_write", "atomic_write_text", "read_encoder_files",
           "resolve_run_dir", "write_encoder_files"]
