"""Maximum softmax probability: an input the model is unsure of is suspicious.

Paper: Hendrycks, Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in
Neural Networks", ICLR 2017.
Score: ``1 - max_c softmax(logits)_c`` in ``[0, 1 - 1/C]``; higher = less confident = more suspicious.
Reads only the logits, so it costs nothing when the caller passes them. Needs a model with scores.
No parameters.

Example:
    >>> detector = ConfidenceDetector().fit(model, x_clean_heldout, false_positive_rate=0.05)
    >>> detector.flags(detector.score(model, x, logits=logits))
"""

from __future__ import annotations

import torch

from bastion.defenses.detectors.base import InputDetector, model_logits
from bastion.models.base import Classifier


class ConfidenceDetector(InputDetector):
    """``1 - max softmax probability`` of each input ``(N,)``."""

    name = "confidence"

    def _score(self, model: Classifier, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        logits = model_logits(model, x) if logits is None else logits
        return 1.0 - torch.softmax(logits.double(), dim=1).amax(dim=1)
