"""Model adapters: every model bastion touches is a :class:`Classifier`."""

from bastion.models.base import Classifier, QueryCounter, predict_in_batches
from bastion.models.loading import LoadedModel, load_classifier
from bastion.models.torch_adapter import TorchClassifier

__all__ = ["Classifier", "LoadedModel", "QueryCounter", "TorchClassifier", "load_classifier", "predict_in_batches"]
