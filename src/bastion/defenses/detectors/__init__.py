"""Input detectors: score each request by how suspicious it is and flag it above a calibrated threshold.

Every detector follows :class:`InputDetector` (scikit-learn style; ``fit(model, x_reference,
false_positive_rate=...)`` returns self, ``score`` ``(N,)`` higher = more suspicious, ``flags``):

- ``confidence``: ``1 - max softmax probability`` (Hendrycks and Gimpel 2017);
- ``energy``: the energy score ``-T * logsumexp(logits / T)`` (Liu et al. 2020);
- ``mahalanobis``: distance to the nearest class in penultimate features (Lee et al. 2018);
- ``squeeze``: feature-squeezing disagreement (Xu et al. 2018), for adversarial inputs.

``build_detector("energy", temperature=2.0)`` builds one by name.
"""

from __future__ import annotations

import inspect
from typing import Any

from bastion.core.errors import InputError
from bastion.defenses.detectors.base import InputDetector
from bastion.defenses.detectors.confidence import ConfidenceDetector
from bastion.defenses.detectors.energy import EnergyDetector
from bastion.defenses.detectors.mahalanobis import MahalanobisDetector, detector_features
from bastion.defenses.detectors.squeeze import SqueezeDetector

#: Every detector by name.
DETECTORS: dict[str, type[InputDetector]] = {
    cls.name: cls for cls in (ConfidenceDetector, EnergyDetector, MahalanobisDetector, SqueezeDetector)
}


def build_detector(kind: str, **params: Any) -> InputDetector:
    """An unfitted detector of ``kind`` (a name in :data:`DETECTORS`) with ``params`` for its ``__init__``.

    Raises:
        InputError: an unknown kind or parameter (the message lists the valid ones), or a bad value.
    """
    cls = DETECTORS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputError(f"unknown detector {kind!r}; valid detectors: {', '.join(DETECTORS)}")
    valid = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        accepted = ", ".join(valid) if valid else "none"
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for the {kind} detector; it accepts: {accepted}")
    return cls(**params)


__all__ = [
    "DETECTORS",
    "ConfidenceDetector",
    "EnergyDetector",
    "InputDetector",
    "MahalanobisDetector",
    "SqueezeDetector",
    "build_detector",
    "detector_features",
]
