"""The commands' one rule for an output folder that exists: a finished previous run is never
overwritten silently.

``pretrain`` continues a run only with ``--resume`` (and refuses a different config, see
``ssamba.pretrain.run.config_changes``); ``finetune``, ``probe``, ``evaluate``, ``convert``,
``shards`` and ``demo`` refuse a folder that holds their finished results, with one line naming
the folder and the file found. An unfinished probe (embeddings cached, no results yet) resumes
from its cache. Single-file outputs (``embed --out``, ``bench``'s tables) are replaced
atomically, only once the new file is complete.
"""

from __future__ import annotations

from pathlib import Path

from ssamba.errors import ConfigError


def refuse_previous_run(out: str | Path, markers: tuple[str, ...], hint: str = "remove it or choose another") -> None:
    """ConfigError when ``out`` holds any of ``markers`` (file or folder names, globs allowed)."""
    out = Path(out)
    for marker in markers:
        found = sorted(out.glob(marker)) if out.is_dir() else []
        if found:
            raise ConfigError(f"{out}: holds a previous run ({found[0].name}); {hint}")
