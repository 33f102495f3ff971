"""An ensemble of classifiers behind the ``Classifier`` protocol.

``combine="probabilities"`` (the default) averages the members' softmax probabilities and returns
their logarithm as the logits: ``softmax`` of the result is exactly the averaged probabilities,
so cross-entropy attacks see the ensemble's real decision, and log-probabilities keep useful
gradients where probabilities would saturate (the scan's "probability outputs" check stays quiet).
Averaging probabilities is the default because it does not depend on each member's logit scale:
a member with large logits (a distilled network, whose logits are ``T`` times larger) would
dominate an average of logits but gets only its weight in an average of probabilities.
``combine="logits"`` averages raw logits: the cheapest, with the smoothest gradients, when members
are trained alike.

Access: white-box only when every member is; the ensemble offers the least that any member
offers. With a label-only member the ensemble is label-only too, its members' votes (one-hot
scores) enter the average and its scores are the one-hot of the winner.
Shapes: x ``(N, *input_shape)``, logits ``(N, C)``, predictions ``(N,)`` int64.

Example:
    >>> ensemble = EnsembleClassifier([model_a, model_b, model_c])
    >>> result = PGD()(ensemble, x, y, ThreatModel(eps=0.1))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from bastion.core.errors import InputError
from bastion.core.threat import Access, weakest_access
from bastion.models.base import Classifier, ModelInput, as_input

Combine = Literal["probabilities", "logits"]


class EnsembleClassifier:
    """A weighted average of classifiers that share input shape, classes and bounds.

    Args:
        members: one or more classifiers.
        combine: ``"probabilities"`` (default: log of the weighted mean of softmax probabilities)
            or ``"logits"`` (weighted mean of logits; every member must offer scores).
        weights: one non-negative weight per member (normalised to sum to 1); default equal.
    """

    kind = "ensemble"

    def __init__(
        self,
        members: Sequence[Classifier],
        *,
        combine: Combine = "probabilities",
        weights: Sequence[float] | None = None,
    ) -> None:
        self.members = list(members)
        if not self.members:
            raise InputError("an ensemble needs at least one member classifier")
        for index, member in enumerate(self.members):
            if not isinstance(member, Classifier):
                raise InputError(f"ensemble member {index} is a {type(member).__name__}, not a bastion Classifier")
        first = self.members[0]
        for index, member in enumerate(self.members[1:], start=1):
            for attribute in ("num_classes", "input_shape", "bounds"):
                if tuple(_as_tuple(getattr(member, attribute))) != tuple(_as_tuple(getattr(first, attribute))):
                    raise InputError(f"ensemble member {index} has {attribute}={getattr(member, attribute)}; "
                                     f"member 0 has {getattr(first, attribute)}. Members must agree")
        if combine not in ("probabilities", "logits"):
            raise InputError(f"combine must be 'probabilities' or 'logits', got {combine!r}")
        self.combine: Combine = combine
        self.access: Access = weakest_access(*(member.access for member in self.members))
        if combine == "logits" and self.access == "labels":
            raise InputError("combine='logits' needs scores from every member; a member is label-only. "
                             "Use combine='probabilities' (a vote for label-only members)")
        self.weights = _normalised(weights, len(self.members))
        self.num_classes = int(first.num_classes)
        self.input_shape = tuple(int(d) for d in first.input_shape)
        self.bounds = (float(first.bounds[0]), float(first.bounds[1]))

    def logits(self, x: ModelInput) -> torch.Tensor:
        """Scores ``(N, C)`` for ``x`` ``(N, *input_shape)`` (a tensor or a NumPy array); differentiable when every
        member is white-box."""
        x = as_input(x, "logits")
        used = [(w, member) for w, member in zip(self.weights, self.members, strict=True) if w > 0]
        if self.combine == "logits":
            return torch.stack([w * member.logits(x) for w, member in used]).sum(dim=0)
        log_probs = torch.stack([self._member_log_probs(member, x) + math.log(w) for w, member in used])
        scores = torch.logsumexp(log_probs, dim=0)
        if self.access == "labels":
            return F.one_hot(scores.argmax(dim=1), self.num_classes).to(scores.dtype)
        return scores

    def _member_log_probs(self, member: Classifier, x: torch.Tensor) -> torch.Tensor:
        scores = member.logits(x)
        if member.access == "labels":
            # A label-only member's one-hot scores are its vote; log(0) = -inf is fine under logsumexp.
            vote = F.one_hot(scores.argmax(dim=1), self.num_classes).to(x.dtype)
            return torch.log(vote)
        return F.log_softmax(scores, dim=1)

    def predict(self, x: ModelInput) -> torch.Tensor:
        """Labels ``(N,)`` int64: the class of highest averaged probability (or logit)."""
        with torch.no_grad():
            return self.logits(as_input(x, "predict")).argmax(dim=1)

    def params(self) -> dict[str, object]:
        """For evidence records: how members are combined, their kinds and weights."""
        return {"combine": self.combine, "members": [m.kind for m in self.members], "weights": self.weights}


def _as_tuple(value: object) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise InputError(f"weights has {len(values)} values for {count} members; give one weight per member")
    if any(not math.isfinite(w) or w < 0 for w in values) or not 0 < sum(values) < math.inf:
        raise InputError(f"weights must be finite, >= 0, not all zero and of a finite sum, got {values}")
    total = sum(values)
    return [w / total for w in values]
