"""Per-sample attack losses on logits ``(N, C)``; higher means closer to the attacker's goal."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` cross-entropy of the true labels (untargeted: maximise it)."""
    return F.cross_entropy(logits, labels, reduction="none")


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` best other logit minus the true logit; positive means misclassified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.amax(dim=1) - true


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` Difference of Logits Ratio (Croce & Hein 2020), untargeted; invariant to logit scale."""
    ordered, _ = logits.sort(dim=1)
    scale = (ordered[:, -1] - ordered[:, -3]).clamp_min(1e-12)
    return margin(logits, labels) / scale


def targeted_dlr(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N,)`` targeted DLR: pushes the target logit above the true one, scaled by the top logits' spread."""
    ordered, _ = logits.sort(dim=1)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    scale = (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4])).clamp_min(1e-12)
    return (target - true) / scale


def targeted_margin(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(N,)`` target logit minus the best other logit; positive means the target is predicted."""
    return -margin(logits, targets)
