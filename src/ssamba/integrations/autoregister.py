"""Register ssamba with transformers' Auto classes once transformers' Auto machinery is imported.

``import ssamba`` must stay light and work without transformers, yet after it
``AutoModel.from_pretrained(ssamba_dir)`` must work whichever of the two was imported first. So
``install()`` (called by ``ssamba/__init__.py``) registers at once when
``transformers.models.auto`` is already imported, and otherwise puts a finder on
``sys.meta_path`` that waits for that package: when it has been executed, the adapter is imported
and registered (``exist_ok``), and the finder removes itself. Nothing is imported before that,
so a ssamba user who never touches transformers pays nothing. A failed registration (an
incompatible transformers) is a warning, never a broken import.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings

TRIGGER = "transformers.models.auto"


def register_now() -> None:
    """Import the adapter (which registers on import); a failure becomes one warning."""
    try:
        import ssamba.integrations.transformers_adapter  # noqa: F401
    except Exception as exc:  # an incompatible transformers must not break the user's import
        warnings.warn(f"ssamba: could not register with transformers ({type(exc).__name__}: {exc})", stacklevel=2)


class _RegisterAfter(importlib.abc.Loader):
    """Wraps the trigger package's loader: execute it, then register."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register_now()


class _WaitForTransformers(importlib.abc.MetaPathFinder):
    """Finds nothing itself; hands the trigger's spec back with a registering loader, once."""

    def find_spec(self, name, path, target=None):
        if name != TRIGGER:
            return None
        uninstall()
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfter(spec.loader)
                return spec
        return None


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _WaitForTransformers)]


def install() -> None:
    """Register now if transformers' Auto classes are loaded, else when they are (idempotent)."""
    if TRIGGER in sys.modules:
        register_now()
    elif not any(isinstance(f, _WaitForTransformers) for f in sys.meta_path):
        sys.meta_path.insert(0, _WaitForTransformers())
