"""Output defenses: post-processors that harden what a classifier reveals per query.

Against extraction and other score-based attacks, an API can reveal less: the top ``k`` classes
(:class:`TopK`), rounded probabilities (:class:`Rounding`), the label only (:class:`LabelOnly`) or
noisy probabilities (:class:`OutputNoise`). :class:`PostprocessedClassifier` (or ``step.wrap(model)``)
puts them behind the :class:`~bastion.models.base.Classifier` protocol, so attacks see the hardened
answers; its access is at most ``"scores"``. No step changes the predicted label, so accuracy is
untouched; :func:`accuracy_cost` measures that and the distortion of the scores.
"""

from bastion.defenses.output.base import PostProcessor, keep_top_class
from bastion.defenses.output.classifier import PostprocessedClassifier
from bastion.defenses.output.cost import AccuracyCost, accuracy_cost
from bastion.defenses.output.label_only import LabelOnly
from bastion.defenses.output.noise import OutputNoise
from bastion.defenses.output.rounding import Rounding
from bastion.defenses.output.topk import TopK

__all__ = [
    "AccuracyCost",
    "LabelOnly",
    "OutputNoise",
    "PostProcessor",
    "PostprocessedClassifier",
    "Rounding",
    "TopK",
    "accuracy_cost",
    "keep_top_class",
]
