"""Register ssamba with transformers' Auto classes once transformers' Auto machinery is imported.

``import ssamba`` must stay light and work without transformers, yet after it
``AutoModel.from_pretrained(ssamba_dir)`` must work whichever of the two was imported first. So
``install()`` (called by ``ssamba/__init__.py``) registers at once when
``transformers.models.auto`` is already imported, and otherwise puts a finder on
``sys.meta_path`` that watches transformers' modules being imported. Registering imports
``transformers.modeling_utils``, which itself imports the Auto package half-way through its own
import; so the finder registers only after a transformers module has finished importing while
the Auto package is loaded and no other transformers module is still being imported. It then
removes itself. Nothing is imported before that, so a ssamba user who never touches transformers
pays nothing. A failed registration (an incompatible transformers) is a warning, never a broken
import.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings

PACKAGE = "transformers"
TRIGGER = "transformers.models.auto"


def register_now() -> None:
    """Import the adapter (which registers on import); a failure becomes one warning."""
    try:
        import ssamba.integrations.transformers_adapter  # noqa: F401
    except Exception as exc:  # an incompatible transformers must not break the user's import
        warnings.warn(f"ssamba: could not register with transformers ({type(exc).__name__}: {exc})", stacklevel=2)


def ready(finished: str | None = None) -> bool:
    """The Auto package is loaded and no transformers module (other than ``finished``, whose import
    is completing) is half-imported."""
    if TRIGGER not in sys.modules:
        return False
    for name, module in list(sys.modules.items()):
        if name != finished and (name == PACKAGE or name.startswith(PACKAGE + ".")) \
                and getattr(getattr(module, "__spec__", None), "_initializing", False):
            return False
    return True


class _CheckAfter(importlib.abc.Loader):
    """Wraps a transformers module's loader: execute it, then register if the time has come."""

    def __init__(self, loader, name: str) -> None:
        self.loader, self.name = loader, name

    def __getattr__(self, attribute):   # resources, get_data, is_package...: the real loader's
        return getattr(self.loader, attribute)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        if _installed() and ready(self.name):
            uninstall()
            register_now()


class _WaitForTransformers(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands transformers' module specs back with a checking loader."""

    def find_spec(self, name, path, target=None):
        if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CheckAfter(spec.loader, name)
                return spec
        return None


def _installed() -> bool:
    return any(isinstance(f, _WaitForTransformers) for f in sys.meta_path)


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _WaitForTransformers)]


def install() -> None:
    """Register now if transformers' Auto classes are loaded, else when they are (idempotent)."""
    if ready():
        register_now()
    elif not _installed():
        sys.meta_path.insert(0, _WaitForTransformers())
