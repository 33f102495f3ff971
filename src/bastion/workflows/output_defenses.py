"""The output defenses the privacy and extraction suites measure, by name.

Each name is a list of :mod:`bastion.defenses.output` post-processors put in front of the model with
:class:`~bastion.defenses.output.PostprocessedClassifier`. None of them changes a predicted label, so
their accuracy cost is zero by construction; what they cost is in the scores (the ``distortion`` of
:func:`~bastion.defenses.output.accuracy_cost`), and what they buy is what the attacks measure.

=============  ==========================================================================================
``none``       the model's own probabilities (the baseline row)
``top-1``      the top class and its probability, the other classes zeroed (not renormalised)
``top-3``      the three largest probabilities, renormalised (skipped for models with 3 classes or fewer)
``rounding-2`` probabilities rounded to 2 decimals
``rounding-1`` probabilities rounded to 1 decimal
``label-only`` the top label only
``noise``      Laplace noise of scale 0.05 on the probabilities, keyed by the input (the same query
               always gets the same answer), the top class kept
=============  ==========================================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.defenses.output import PostProcessor

#: Every defense name, in report order; ``none`` is the undefended baseline.
OUTPUT_DEFENSES: tuple[str, ...] = ("none", "top-1", "top-3", "rounding-2", "rounding-1", "label-only", "noise")

#: The noise defense's Laplace scale, in probability units.
NOISE_SCALE = 0.05


def defense_steps(name: str, *, num_classes: int, seed: int = 0) -> list[PostProcessor] | None:
    """The post-processors of defense ``name`` for a model with ``num_classes`` classes.

    Returns ``None`` when the defense does not apply (``top-3`` with 3 classes or fewer: it would reveal
    everything). ``seed`` keys the noise.

    Raises:
        ValueError: an unknown name (the settings' validators check names first).
    """
    from bastion.defenses.output import LabelOnly, OutputNoise, Rounding, TopK

    builders: dict[str, Any] = {
        "none": lambda: [],
        "top-1": lambda: [TopK(k=1)],
        "top-3": lambda: [TopK(k=3)] if num_classes > 3 else None,
        "rounding-2": lambda: [Rounding(decimals=2)],
        "rounding-1": lambda: [Rounding(decimals=1)],
        "label-only": lambda: [LabelOnly()],
        "noise": lambda: [OutputNoise(scale=NOISE_SCALE, seed=seed)],
    }
    if name not in builders:
        raise ValueError(f"unknown output defense {name!r}; choose from {', '.join(OUTPUT_DEFENSES)}")
    return builders[name]()


def describe_steps(steps: list[PostProcessor]) -> list[dict[str, Any]]:
    """Each step's name and parameters, for the evidence record."""
    return [{"name": step.name, "params": step.get_params()} for step in steps]
