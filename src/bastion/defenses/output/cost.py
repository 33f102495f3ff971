"""What an output defense costs: accuracy (zero for the steps here, which keep the top class) and distortion.

Example:
    >>> cost = accuracy_cost(model, TopK(k=1).wrap(model), x_test, y_test)
    >>> cost.cost, cost.distortion
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from bastion.core.errors import InputError
from bastion.models.base import Classifier


class AccuracyCost(BaseModel):
    """Accuracy of a model and of its hardened version on the same labelled data."""

    model_config = ConfigDict(extra="forbid")

    samples: int
    base_accuracy: float
    hardened_accuracy: float
    cost: float = Field(description="base_accuracy - hardened_accuracy (positive: the defense loses accuracy)")
    agreement: float = Field(description="fraction of inputs on which both predict the same label")
    distortion: float = Field(description="mean total-variation distance between the two models' probabilities, "
                                          "in [0, 1]: what the defense takes from users of the scores")


def accuracy_cost(
    base: Classifier,
    hardened: Classifier,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 512,
) -> AccuracyCost:
    """Compare ``base`` and ``hardened`` on ``x`` ``(N, *input_shape)`` with labels ``y`` ``(N,)``.

    Probabilities are ``softmax(logits)``, or one-hot labels for a label-only model; ``batch_size``
    (default 512) inputs go through each model at a time.

    Raises:
        InputError: empty or mismatched data, or models with different classes.
    """
    inputs = torch.as_tensor(x).float() if isinstance(x, np.ndarray) else x.detach().float()
    labels = torch.as_tensor(y).long() if isinstance(y, np.ndarray) else y.detach().long()
    if inputs.ndim < 2 or labels.shape != (len(inputs),) or not len(inputs):
        raise InputError(f"x must be (N, *input_shape) and y (N,), non-empty; got {tuple(inputs.shape)} "
                         f"and {tuple(labels.shape)}")
    if base.num_classes != hardened.num_classes:
        raise InputError(f"the models have {base.num_classes} and {hardened.num_classes} classes; they must agree")
    base_p, hardened_p = [], []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            base_p.append(_probabilities(base, batch))
            hardened_p.append(_probabilities(hardened, batch))
    p, q = torch.cat(base_p), torch.cat(hardened_p)
    base_labels, hardened_labels = p.argmax(dim=1), q.argmax(dim=1)
    base_accuracy = float((base_labels == labels).double().mean())
    hardened_accuracy = float((hardened_labels == labels).double().mean())
    return AccuracyCost(
        samples=len(inputs), base_accuracy=base_accuracy, hardened_accuracy=hardened_accuracy,
        cost=base_accuracy - hardened_accuracy, agreement=float((base_labels == hardened_labels).double().mean()),
        distortion=float(0.5 * (p - q).abs().sum(dim=1).mean()),
    )


def _probabilities(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        x = x.to(device)
    scores = model.logits(x).detach().float().cpu()
    if model.access == "labels":
        return F.one_hot(scores.argmax(dim=1), model.num_classes).float()
    return torch.softmax(scores, dim=1)
