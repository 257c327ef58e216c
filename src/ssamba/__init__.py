"""ssamba: self-supervised audio encoders with bidirectional Mamba (SSAMBA) and the SSAST baseline.

Public API: ``create_model(name, **overrides)``, ``load(path_or_address, **overrides)``,
``push_to_hub(model_or_dir, repo_id)``, ``AudioEncoder``,
``EncoderConfig``, ``SSAMBA``, ``SSAST``. They are imported lazily so that ``import ssamba.errors``
or ``ssamba --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import os
import sys

# On Linux numba's parallel kernels run on torch's own OpenMP threads (``ssamba.nn._numba``), so
# torch's threads may keep OpenMP's default of spinning briefly between ops: measured faster for
# both models (SSAMBA-tiny at 512 tokens 70 vs 85 ms min, SDPA SSAST-tiny 48 vs 56 ms with
# OMP_WAIT_POLICY=PASSIVE), and a script runs at one speed whichever package it imports first.
# Elsewhere numba keeps its own pool, and torch's idle threads must sleep, not spin beside it
# (only effective before torch is first imported).
if not sys.platform.startswith("linux"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# transformers' Auto classes learn "ssamba"/"ssast" once transformers loads them (nothing is imported now)
from ssamba.integrations import autoregister as _autoregister  # noqa: E402

_autoregister.install()

_LAZY = {
    "create_model": "ssamba.models.registry",
    "AudioEncoder": "ssamba.models.encoder",
    "SSAMBA": "ssamba.models.encoder",
    "SSAST": "ssamba.models.encoder",
    "EncoderConfig": "ssamba.models.config",
    "load": "ssamba.models.checkpoint",
    "push_to_hub": "ssamba.models.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ssamba' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
