"""ssamba.nn.workspace: scratch buffers reused by name (the fused mixers' temporaries)."""

from __future__ import annotations

import threading

import torch

from ssamba.models.registry import create_model
from ssamba.nn import workspace


def test_scratch_reuses_a_buffer_per_name_and_grows():
    workspace.release()
    a = workspace.scratch("test a", 4, 8)
    assert a.dtype == torch.float32 and a.shape == (4, 8) and a.is_contiguous()
    again = workspace.scratch("test a", 2, 8)
    assert again.data_ptr() == a.data_ptr()                      # same storage, smaller view
    other = workspace.scratch("test b", 4, 8)
    assert other.data_ptr() != a.data_ptr()
    bigger = workspace.scratch("test a", 64, 8)                    # grows: a new buffer
    assert bigger.shape == (64, 8) and bigger.data_ptr() != a.data_ptr()
    workspace.release()
    assert workspace._BUFFERS.tensors == {}


def test_scratch_is_float32_whatever_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert workspace.scratch("test dtype", 3).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)


def test_scratch_keeps_no_buffer_over_the_cap(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_KEPT_BYTES", 64)
    first = workspace.scratch("test big", 100)
    second = workspace.scratch("test big", 100)
    assert first.data_ptr() != second.data_ptr() and first.dtype == torch.float32


def test_threads_get_their_own_buffers():
    mine = workspace.scratch("test thread", 16).data_ptr()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(workspace.scratch("test thread", 16).data_ptr()))
    thread.start()
    thread.join()
    assert seen and seen[0] != mine


def test_training_steps_reuse_the_mixer_buffers_and_stay_exact():
    """Two identical fused training steps give identical gradients (no stale scratch), and the
    second step writes the same buffers the first one did (nothing re-allocated)."""
    torch.manual_seed(0)
    model = create_model("ssamba_tiny", depth=2, drop_path_rate=0.0).train()
    fbank = torch.randn(2, 64, 128)

    def grads():
        model.zero_grad(set_to_none=True)
        model.forward_features(fbank).pow(2).mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    first = grads()
    pointers = {name: t.data_ptr() for name, t in workspace._BUFFERS.tensors.items()}
    assert {"backward du", "backward ddelta", "backward dxz", "forward u"} <= set(pointers)
    second = grads()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert {name: t.data_ptr() for name, t in workspace._BUFFERS.tensors.items()} == pointers


def test_inference_buffers_work_under_inference_mode_and_no_grad_alike():
    """The inference mixer's buffers are first made inside ``torch.inference_mode`` here; they must
    stay writable under plain ``no_grad`` (an inference-mode tensor would refuse the in-place
    writes), and the outputs must not depend on which mode made them."""
    workspace.release()
    torch.manual_seed(0)
    model = create_model("ssamba_tiny", depth=2).eval()
    fbank = torch.randn(2, 64, 128)
    with torch.inference_mode():
        first = model.forward_features(fbank).clone()
    assert "inference u" in workspace._BUFFERS.tensors
    with torch.no_grad():
        second = model.forward_features(fbank)
    assert torch.equal(first, second)
