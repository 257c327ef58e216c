"""The demo's fine-tuning stage on a toy task: the recipe's pooling and LP-FT head reach the run,
and the test split is scored with the bootstrap interval."""

from pathlib import Path

import numpy as np
import pytest
import torch

import ssamba
from ssamba.demo.finetune import FinetuneRecipe, finetune_one
from ssamba.demo.tasks import DemoTask, TaskItem


def _toy_task(per_class: int = 10) -> tuple[DemoTask, dict]:
    """Three classes told apart by a raised band of mel bins; 10 clips per class and split."""
    rng = np.random.default_rng(0)
    fbanks, items = {}, {"train": [], "test": []}
    for split in items:
        for c in range(3):
            for k in range(per_class):
                path = Path(f"/toy/{split}/{c}/{k}.wav")
                fbank = 0.1 * rng.standard_normal((60, 128)).astype(np.float32)
                fbank[:, 40 * c:40 * c + 40] += 3.0
                fbanks[path] = fbank
                items[split].append(TaskItem(path, f"c{c}", f"{split}{k}"))
    return DemoTask("toy", "toy bands", ["c0", "c1", "c2"], items["train"], items["test"]), fbanks


@pytest.mark.parametrize("pooling", ["mean", "mean_std", "bands"])
def test_lp_ft_run_starts_from_the_probe_and_scores_the_test_split(tmp_path, pooling):
    task, fbanks = _toy_task()
    accuracy = {}
    for head_init in ("probe", "random"):
        torch.manual_seed(0)
        encoder = ssamba.create_model("ssast_tiny", depth=2, embed_dim=32, num_heads=2, input_tdim=48,
                                      drop_path_rate=0.0)
        recipe = FinetuneRecipe(seconds=2.0, frames=48, batch_size=8, lr=1e-9, warmup_steps=0, freq_mask=0,
                                time_mask=0, pooling=pooling, head_init=head_init, threads=1)
        result, run = finetune_one(encoder, task, fbanks.__getitem__, 0.0, recipe, "toy, fine-tuned",
                                   tmp_path / head_init, seed=0)
        assert run["steps"] >= 1 and result.method == "toy, fine-tuned" and len(result.predictions) == 30
        assert result.ci_low <= result.accuracy <= result.ci_high
        assert result.dim == {"mean": 32, "mean_std": 64, "bands": 8 * 32}[pooling]   # what the head reads
        accuracy[head_init] = result.accuracy
    # Adam moves each weight by about lr per step, so at lr 1e-9 every head stays where it started,
    # however many steps the 2 s allow: the probe's head separates the bands (0.87 here), a random
    # head stays near chance (1/3)
    assert accuracy["probe"] > accuracy["random"] + 0.3, accuracy
