"""Fine-tuning stage of the demo: each encoder fine-tuned on each task for the same wall clock.

The paper's evidence for self-supervised pretraining is fine-tuning: the pretrained encoder,
trained end to end on a labelled task, beats the same network trained from its random
initialisation. Here every (encoder, task) pair gets the same recipe and the same seconds on
the shared fine-tuning path (``ssamba.downstream.finetune.FinetuneTask`` on the ``Trainer``: head
LR multiplier, SpecAugment, mixup), from the demo's cached fbanks. Test accuracy gets the same
95 % bootstrap interval as the probes (``ProbeResult`` rows, method "<encoder>, fine-tuned").
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ssamba.demo.evaluate import ProbeResult, bootstrap_ci
from ssamba.demo.features import pad_to
from ssamba.features.augment import sample_beta, spec_augment
from ssamba.models.encoder import pooled_dim

FINETUNED = ", fine-tuned"


@dataclass
class FinetuneRecipe:
    """One recipe for every encoder and task. `seconds`: wall clock per run (the budget that
    makes the comparison fair); `frames`: crop length (clips are ~1.4 s; shorter crops = more
    steps per second); `head_lr_mult`: the head learns at lr x this; SpecAugment widths and
    the share of mixed pairs (Beta(10, 10), on fbanks); `pooling` ("mean" / "mean_std" / "bands") and
    `head_init` ("random" / "probe": LP-FT, its fitting time counted inside `seconds`) as in
    ``ssamba.downstream.finetune.FinetuneConfig``."""

    seconds: float = 40.0
    frames: int = 128
    batch_size: int = 16
    lr: float = 3e-4
    head_lr_mult: float = 3.0
    weight_decay: float = 5e-7
    warmup_steps: int = 10
    freq_mask: int = 24
    time_mask: int = 24
    mixup_p: float = 0.0
    pooling: str = "mean"
    head_init: str = "random"
    threads: int = 2


class ClipDataset(Dataset):
    """Labelled clips from cached fbanks: a `frames` crop (random when training, centred when
    testing), padded with `pad_value`; training items get SpecAugment and mixup, seeded by the
    Trainer's (index, item_seed) keys. Items: (fbank (frames, bins), one-hot or mixed target)."""

    def __init__(self, fbanks: Sequence[np.ndarray], labels: Sequence[int], num_classes: int,
                 recipe: FinetuneRecipe, pad_value: float, train: bool) -> None:
        self.fbanks, self.labels = list(fbanks), list(labels)
        self.num_classes, self.recipe, self.pad_value, self.train = num_classes, recipe, pad_value, train

    def __len__(self) -> int:
        return len(self.fbanks)

    def _crop(self, clip: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        spare = len(clip) - self.recipe.frames
        if spare <= 0:
            start = 0
        elif self.train:
            start = int(torch.randint(spare + 1, (1,), generator=generator))
        else:
            start = spare // 2
        return pad_to(clip[start:start + self.recipe.frames], self.recipe.frames, self.pad_value)

    def _target(self, index: int) -> torch.Tensor:
        target = torch.zeros(self.num_classes)
        target[self.labels[index]] = 1.0
        return target

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        index, item_seed = key if isinstance(key, tuple) else (key, 0)
        generator = torch.Generator().manual_seed(int(item_seed))
        fbank, target = self._crop(self.fbanks[index], generator), self._target(index)
        if not self.train:
            return fbank, target
        r = self.recipe
        if r.mixup_p > 0 and float(torch.rand(1, generator=generator)) < r.mixup_p:
            other = int(torch.randint(len(self), (1,), generator=generator))
            lam = sample_beta(10.0, 10.0, generator)
            fbank = lam * fbank + (1 - lam) * self._crop(self.fbanks[other], generator)
            target = lam * target + (1 - lam) * self._target(other)
        if r.freq_mask or r.time_mask:
            fbank = spec_augment(fbank, r.freq_mask, r.time_mask, generator)
        return fbank, target


def finetune_one(encoder: torch.nn.Module, task, fbank_of: Callable[[Path], np.ndarray], pad_value: float,
                 recipe: FinetuneRecipe, method: str, out_dir: Path, seed: int = 0) -> tuple[ProbeResult, dict]:
    """Fine-tune `encoder` (a copy is trained) on a demo task; score its test split."""
    from ssamba.downstream.finetune import FinetuneTask
    from ssamba.downstream.head_init import init_head_from_probe
    from ssamba.train.config import TrainConfig
    from ssamba.train.trainer import Trainer

    index = {c: i for i, c in enumerate(task.classes)}

    def dataset(items, train: bool) -> ClipDataset:
        return ClipDataset([fbank_of(i.path.resolve()) for i in items], [index[i.label] for i in items],
                           len(task.classes), recipe, pad_value, train)

    start = time.perf_counter()
    torch.manual_seed(seed)
    model = FinetuneTask(copy.deepcopy(encoder).train(), len(task.classes), "ce", recipe.head_lr_mult,
                         pooling=recipe.pooling)
    if recipe.head_init == "probe":
        init_head_from_probe(model, dataset(task.train_items, False), batch_size=32)
    seconds_left = max(recipe.seconds - (time.perf_counter() - start), 1.0)
    config = TrainConfig(seed=seed, epochs=100_000, max_minutes=seconds_left / 60, batch_size=recipe.batch_size,
                         lr=recipe.lr, weight_decay=recipe.weight_decay, warmup_steps=recipe.warmup_steps,
                         schedule="constant", num_workers=0, num_threads=recipe.threads,
                         checkpoint_every=10**9, keep_last=1, progress=False, tensorboard=False)
    summary = Trainer(model, dataset(task.train_items, True), config, out_dir).fit()
    test = dataset(task.test_items, False)
    model.eval()
    with torch.no_grad():
        fbanks = torch.stack([test[i][0] for i in range(len(test))])
        predictions = torch.cat([model.logits(fbanks[i:i + 32]).argmax(-1)
                                 for i in range(0, len(fbanks), 32)]).numpy()
    labels = np.asarray(test.labels)
    correct = (predictions == labels).astype(np.float64)
    low, high = bootstrap_ci(correct, seed=seed)
    from ssamba.downstream.metrics import classification_metrics

    scores = np.eye(len(task.classes), dtype=np.float32)[predictions]
    macro_f1 = classification_metrics(scores, np.eye(len(task.classes), dtype=np.float32)[labels]).get("macro_f1")
    result = ProbeResult(task.name, method, float(correct.mean()), low, high, float(macro_f1),
                         pooled_dim(encoder, recipe.pooling), predictions, labels)
    return result, {"task": task.name, "method": method, "steps": summary["steps"], "epochs": summary["epochs"],
                    "last_loss": float(summary["metrics"].get("loss", float("nan")))}


def finetune_tasks(tasks: Sequence, encoders: dict[str, Callable[[], torch.nn.Module]],
                   fbank_of: Callable[[Path], np.ndarray], pad_value: float, recipe: FinetuneRecipe,
                   out_dir: Path, seed: int = 0, say: Callable[[str], None] = lambda line: None
                   ) -> tuple[list[ProbeResult], list[dict]]:
    """Every (encoder, task) fine-tuning run, one after another; results and per-run training facts."""
    results, runs = [], []
    for name, make in encoders.items():
        encoder = make()
        for task in tasks:
            t0 = time.perf_counter()
            method = name + FINETUNED
            slug = f"{name.lower().replace(' ', '_')}/{task.name}"
            result, run = finetune_one(encoder, task, fbank_of, pad_value, recipe, method, out_dir / slug, seed)
            results.append(result)
            runs.append({**run, "seconds": round(time.perf_counter() - t0, 1)})
            say(f"[demo]   fine-tuned {name} on {task.name}: {100 * result.accuracy:.1f} % "
                f"({run['steps']} steps)")
    return results, runs
