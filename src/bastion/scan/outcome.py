"""What a scan produces: the evidence record plus the example images the HTML report shows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bastion.core.records import ScanRecord
from bastion.scan.defense_record import DefenseScanRecord


@dataclass(frozen=True)
class ExampleGrid:
    """Clean vs adversarial examples at one eps, for the report's image grid.

    Attributes:
        eps: the budget the examples were found at.
        sample_ids: ``K`` sample ids.
        clean: ``(K, *input_shape)`` float32 clean inputs.
        adversarial: ``(K, *input_shape)`` float32 worst-case inputs.
        labels, clean_predictions, adversarial_predictions: ``(K,)`` int64.
        broken_by: ``K`` attack names.
    """

    eps: float
    sample_ids: list[str]
    clean: np.ndarray
    adversarial: np.ndarray
    labels: np.ndarray
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    broken_by: list[str]


@dataclass(frozen=True)
class ScanOutcome:
    """A finished scan: ``record`` is canonical; ``examples`` (one grid per eps) feed the HTML report.

    ``defense`` is set by a defended scan (:func:`bastion.scan.adaptive.run_defended_scan`): the
    plain pass and its comparison with ``record``, which is then the adaptive pass.
    """

    record: ScanRecord
    class_names: list[str]
    examples: list[ExampleGrid] = field(default_factory=list)
    defense: DefenseScanRecord | None = None
