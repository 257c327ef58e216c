"""``import ssamba`` registers with transformers' Auto classes whichever is imported first, without
importing transformers (or torch) itself. The import orders run in fresh interpreters (slow: each
imports torch and transformers); the quick variant drives the same import hook with a stand-in
package."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

LOAD = """
import sys, tempfile
{imports}
from transformers import AutoConfig, AutoModel
import ssamba
encoder = ssamba.create_model("ssast_tiny", embed_dim=32, depth=2, num_heads=2, input_tdim=32)
directory = tempfile.mkdtemp()
encoder.save_pretrained(directory)
print(type(AutoConfig.from_pretrained(directory)).__name__, type(AutoModel.from_pretrained(directory)).__name__)
"""


def run_python(code: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("imports", ["import transformers\nimport ssamba",
                                     "import ssamba\nimport transformers",
                                     "from transformers import AutoModel\nimport ssamba",
                                     "import ssamba\nfrom transformers import pipeline"])
def test_auto_classes_know_ssamba_in_either_import_order(imports):
    assert run_python(LOAD.format(imports=imports)) == "SsastConfig SsastModel"


def test_import_ssamba_imports_neither_transformers_nor_torch():
    code = "import sys, ssamba\nprint(sorted(m for m in ('transformers', 'torch', 'datasets') if m in sys.modules))"
    assert run_python(code) == "[]"


def test_hook_registers_after_the_outermost_import_completes(tmp_path, monkeypatch):
    """A stand-in for transformers: ``fakelib.outer`` imports the Auto package half-way through its
    own import (as ``transformers.modeling_utils`` does); registration waits until it is complete."""
    from ssamba.integrations import autoregister

    package = tmp_path / "fakelib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "auto.py").write_text("LOADED = True\n")
    (package / "outer.py").write_text("import fakelib.auto\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(autoregister, "PACKAGE", "fakelib")
    monkeypatch.setattr(autoregister, "TRIGGER", "fakelib.auto")
    calls = []
    monkeypatch.setattr(autoregister, "register_now",
                        lambda: calls.append(getattr(sys.modules.get("fakelib.outer"), "DONE", False)))
    try:
        autoregister.install()
        autoregister.install()                                  # idempotent: one finder
        assert sum(isinstance(f, autoregister._WaitForTransformers) for f in sys.meta_path) == 1
        import fakelib  # noqa: F401
        assert calls == []                                      # the Auto package is not loaded yet
        import fakelib.outer  # noqa: F401
        assert calls == [True]                                  # once, after outer finished, not inside it
        assert not autoregister._installed()
        autoregister.install()                                  # already loaded: registers at once
        assert calls == [True, True]
    finally:
        autoregister.uninstall()
        for name in ("fakelib", "fakelib.auto", "fakelib.outer"):
            sys.modules.pop(name, None)
