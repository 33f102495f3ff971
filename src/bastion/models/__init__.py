"""Model adapters: every model bastion touches is a :class:`Classifier`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.models.base import Classifier, QueryCounter, predict_in_batches
from bastion.models.loading import LoadedModel, load_classifier
from bastion.models.torch_adapter import TorchClassifier

if TYPE_CHECKING:
    from bastion.models.remote import RemoteClassifier
    from bastion.models.remote_http import RetryPolicy

__all__ = ["Classifier", "LoadedModel", "QueryCounter", "RemoteClassifier", "RetryPolicy", "TorchClassifier",
           "load_classifier", "predict_in_batches"]

#: Names imported on first use, so that importing bastion.models does not import httpx.
_LAZY = {"RemoteClassifier": "bastion.models.remote", "RetryPolicy": "bastion.models.remote_http"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bastion.models' has no attribute {name!r}")
