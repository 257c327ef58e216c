"""LP-FT: start a fine-tuning head as a linear probe instead of at random (Kumar et al., 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").

A random head sends large, arbitrary gradients into the pretrained encoder during the first
steps, and on a short budget those steps are most of the run. Fitting the head's Linear first,
as a logistic regression on the frozen encoder's features of the training set (exactly what the
head reads: the pooled embedding after the head's LayerNorm), makes fine-tuning start where the
probe ends. The same recipe applies to every encoder, random initialisation included.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from ssamba.downstream.probe import LinearProbe, ProbeConfig

HEAD_INITS = ("random", "probe")


def init_head_from_probe(task, dataset: Dataset, batch_size: int = 16, weight_decay: float | None = None,
                         max_iter: int = 500) -> None:
    """Set ``task.head.linear`` (a ``FinetuneTask``) to the L2-regularised logistic regression (softmax
    for loss "ce", per-class sigmoid for "bce") fitted with L-BFGS on the head's input features of
    ``dataset`` ((features, target) pairs, read without augmentation), the encoder in eval mode.
    ``weight_decay=None``: 1 / N, as ``ProbeConfig``."""
    was_training = task.training
    task.eval()
    device = task.head.linear.weight.device
    features, targets = [], []
    with torch.no_grad():
        for batch, target in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            features.append(task.head.features(task.embed(batch.to(device))).double().cpu())
            targets.append(target.double())
    linear = task.head.linear
    probe = LinearProbe(linear.in_features, linear.out_features, multi_label=task.loss_name == "bce",
                        config=ProbeConfig(weight_decay=weight_decay, max_iter=max_iter, standardize=False))
    probe.fit(torch.cat(features), torch.cat(targets))
    with torch.no_grad():
        linear.weight.copy_(probe.linear.weight)
        linear.bias.copy_(probe.linear.bias)
    task.train(was_training)
