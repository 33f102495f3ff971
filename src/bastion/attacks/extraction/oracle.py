"""The victim as an extraction attack sees it: a query budget that is never exceeded, and training targets.

Every victim query of an extraction attack goes through :class:`BudgetedOracle`. It counts samples
with :class:`~bastion.models.base.QueryCounter` and refuses a batch that would take the count past
the budget (raising :class:`QueryBudgetExceeded`) *before* the victim sees it, so a bug in an attack
shows as an error, never as a silently overspent budget.

Answers are the targets a copy is trained on, ``(N, C)`` float32 on the CPU:

- ``"probabilities"``: ``softmax(victim.logits(x))`` (for a victim that returns log-probabilities,
  such as an output-hardened model, these are its probabilities).
- ``"labels"``: the one-hot top label. A label-only victim (``access == "labels"``) is always read
  this way, as the :class:`~bastion.models.base.Classifier` protocol says only its argmax may be used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.extraction.base import TargetKind
from bastion.core.errors import QueryBudgetExceeded
from bastion.models.base import Classifier, QueryCounter

#: Samples per victim call; a larger query is split into batches of this size.
QUERY_BATCH = 256

# QueryBudgetExceeded lives in core.errors (remote endpoints raise it too); it is re-exported here.
__all__ = ["QUERY_BATCH", "BudgetedOracle", "QueryBudgetExceeded"]


class BudgetedOracle:
    """Query ``victim`` at most ``budget`` times (samples), answering with ``targets``.

    Args:
        victim: the classifier under attack; any access level.
        budget: the most samples that may be sent to it (>= 1, checked by the attack).
        targets: ``"probabilities"`` or ``"labels"``; a label-only victim is read as labels regardless.
    """

    def __init__(self, victim: Classifier, budget: int, targets: TargetKind) -> None:
        self.counter = QueryCounter(victim)
        self.budget = int(budget)
        self.targets: TargetKind = "labels" if victim.access == "labels" else targets
        self.num_classes = int(victim.num_classes)
        device = getattr(victim, "device", None)
        self._device = device if isinstance(device, torch.device) else None

    @property
    def used(self) -> int:
        """Samples sent to the victim so far."""
        return self.counter.count

    @property
    def remaining(self) -> int:
        """Samples that may still be sent."""
        return self.budget - self.counter.count

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Targets ``(N, C)`` float32 on the CPU for inputs ``(N, *input_shape)``; spends ``N`` queries.

        Raises:
            QueryBudgetExceeded: ``N`` is more than :attr:`remaining` (nothing is sent then).
        """
        if len(x) > self.remaining:
            raise QueryBudgetExceeded(f"{len(x)} queries asked with {self.remaining} of {self.budget} left")
        answers = [self._answer(x[start : start + QUERY_BATCH]) for start in range(0, len(x), QUERY_BATCH)]
        if not answers:
            return torch.zeros(0, self.num_classes)
        return torch.cat(answers)

    def _answer(self, batch: torch.Tensor) -> torch.Tensor:
        if self._device is not None:
            batch = batch.to(self._device)
        with torch.no_grad():
            scores = self.counter.logits(batch).detach().float().cpu()
        if self.targets == "labels":
            return F.one_hot(scores.argmax(dim=1), self.num_classes).float()
        return torch.softmax(scores, dim=1)
