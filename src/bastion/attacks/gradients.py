"""Input gradients of a per-sample loss, without touching parameter gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.models.base import Classifier

LossOnLogits = Callable[[torch.Tensor], torch.Tensor]


def logits_loss_and_gradient(
    model: Classifier, x: torch.Tensor, loss: LossOnLogits
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward and backward once.

    Args:
        model: a white-box classifier.
        x: ``(N, *input_shape)`` inputs.
        loss: maps logits ``(N, C)`` to a per-sample loss ``(N,)`` to be increased.

    Returns:
        ``(logits (N, C), loss (N,), gradient of the loss w.r.t. x (N, *input_shape))``, all detached.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model.logits(x)
        values = loss(logits)
        (gradient,) = torch.autograd.grad(values.sum(), x)
    return logits.detach(), values.detach(), gradient
