"""The training loop the tiny models share: AdamW, warm-up then cosine decay, gradient clipping.

Pretraining (:mod:`utils.models.causal`), LoRA fine-tuning (:mod:`utils.models.sft`) and the T5
(:mod:`utils.models.seq2seq`) differ only in what a batch is and which parameters learn; each passes a
``next_batch(step)`` function returning the model's keyword arguments.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> class Wrapped(torch.nn.Module):  # a model that returns .loss, like transformers' models
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = model
    ...     def forward(self, x, y):
    ...         return type("Out", (), {"loss": ((self.lin(x) - y) ** 2).mean()})
    >>> net = Wrapped()
    >>> batch = {"x": torch.ones(4, 2), "y": torch.zeros(4, 1)}
    >>> losses = train_steps(net, net.parameters(), lambda step: batch, steps=20, lr=0.1, warmup=2,
    ...                      progress=False)
    >>> losses[-1] < losses[0]
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable


def train_steps(model: Any, params: Iterable, next_batch: Callable[[int], dict], *, steps: int, lr: float,
                warmup: int, weight_decay: float = 0.0, desc: str = "train", progress: bool = True) -> list[float]:
    """Train ``params`` of ``model`` for ``steps`` steps; returns the loss of every step.

    Each step: ``model(**next_batch(step)).loss``, backward, clip the gradient norm to 1.0, an AdamW
    step, a scheduler step (``warmup`` linear warm-up steps, then cosine decay to 0). A loss that is
    not finite stops training with an error naming the step.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, mininterval=5)
    for step in bar:
        loss = model(**next_batch(step)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{desc}: training diverged at step {step} (loss {losses[-1]})")
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}", refresh=False)
    return losses
