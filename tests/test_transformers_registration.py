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
                                     "from transformers import AutoModel\nimport ssamba"])
def test_auto_classes_know_ssamba_in_either_import_order(imports):
    assert run_python(LOAD.format(imports=imports)) == "SsastConfig SsastModel"


def test_import_ssamba_imports_neither_transformers_nor_torch():
    code = "import sys, ssamba\nprint(sorted(m for m in ('transformers', 'torch', 'datasets') if m in sys.modules))"
    assert run_python(code) == "[]"


def test_hook_registers_when_the_trigger_package_is_imported(tmp_path, monkeypatch):
    from ssamba.integrations import autoregister

    (tmp_path / "fake_auto_pkg").mkdir()
    (tmp_path / "fake_auto_pkg" / "__init__.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(autoregister, "TRIGGER", "fake_auto_pkg")
    calls = []
    monkeypatch.setattr(autoregister, "register_now", lambda: calls.append(sys.modules["fake_auto_pkg"].LOADED))
    try:
        autoregister.install()
        autoregister.install()                                  # idempotent: one finder
        assert sum(isinstance(f, autoregister._WaitForTransformers) for f in sys.meta_path) == 1
        assert calls == []                                      # nothing happens before the import
        import fake_auto_pkg  # noqa: F401
        assert calls == [True]                                  # after the package has run
        assert not any(isinstance(f, autoregister._WaitForTransformers) for f in sys.meta_path)
        autoregister.install()                                  # already imported: registers at once
        assert calls == [True, True]
    finally:
        autoregister.uninstall()
        sys.modules.pop("fake_auto_pkg", None)
