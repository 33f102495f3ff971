"""What every certifier returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Certificate:
    """The certified answer for one input.

    Attributes:
        prediction: the class the certifier vouches for, or ``-1`` when it abstains.
        radius: the certified radius in the certifier's norm (l2 for Gaussian smoothing, linf or
            l2 for bounds): no perturbation of at most this size changes ``prediction``.
            ``0.0`` when abstaining or when nothing could be certified.
        abstained: the certifier could not decide (smoothing: top class not significant).
    """

    prediction: int
    radius: float
    abstained: bool

    def certifies(self, label: int, radius: float) -> bool:
        """Certified correct at ``radius``: not abstained, predicts ``label``, radius at least ``radius``."""
        return not self.abstained and self.prediction == label and self.radius >= radius
