"""Certification: randomized smoothing (probabilistic, l2) and IBP/CROWN bounds (deterministic).

``GaussianSmoothing(model, sigma).certify(x, ...)`` and ``certify_sequential(...)`` for smoothing;
``certify_bounds(classifier, x, y, eps=..., method="crown")`` and ``margin_bounds`` for bounds.
Every certifier returns :class:`Certificate` objects.
"""

from bastion.certify.base import Certificate
from bastion.certify.bounds import certified_accuracy, certified_radius, certify_bounds, logit_bounds, margin_bounds
from bastion.certify.sequential import certify_sequential
from bastion.certify.smoothing import GaussianSmoothing

__all__ = [
    "Certificate",
    "GaussianSmoothing",
    "certified_accuracy",
    "certified_radius",
    "certify_bounds",
    "certify_sequential",
    "logit_bounds",
    "margin_bounds",
]
