"""Adapter for a fitted scikit-learn text classifier: a pipeline whose input is raw strings.

A text model is recognised by its first step: a scikit-learn text vectoriser (``CountVectorizer``,
``TfidfVectorizer``, ``HashingVectorizer``), e.g. ``make_pipeline(TfidfVectorizer(), LogisticRegression())``.
It is not a tensor :class:`~bastion.models.base.Classifier` (attacks, scans and certificates need tensors);
the gateway serves it with Open Inference Protocol v2 ``BYTES`` inputs.

Example::

    model = TextClassifier(skops.io.load("spam.skops", trusted=[...]))
    model.predict_proba(["win a free prize", "see you at lunch"])  # (2, C) float64
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.core.threat import Access
from bastion.models.sklearn_adapter import check_classes


def is_text_estimator(estimator: Any) -> bool:
    """Whether ``estimator`` (or its pipeline's first step) is a scikit-learn text vectoriser."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.pipeline import Pipeline

    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) and estimator.steps else estimator
    return isinstance(first, (CountVectorizer, HashingVectorizer))


class TextClassifier:
    """A classifier of strings around a fitted scikit-learn text pipeline.

    Args:
        estimator: fitted, with ``predict`` and ``classes_`` equal to ``0 .. C-1``, taking a list of strings.

    ``access`` is ``"scores"`` when the estimator has ``predict_proba``, else ``"labels"`` (probabilities are
    then one-hot predictions).
    """

    kind = "sklearn-text"

    def __init__(self, estimator: Any) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise InputError(f"{type(estimator).__name__} has no predict method; not a classifier")
        if not is_text_estimator(estimator):
            raise InputError(f"{type(estimator).__name__} does not start with a text vectoriser "
                             "(CountVectorizer, TfidfVectorizer, HashingVectorizer): not a text classifier")
        self.estimator = estimator
        self.num_classes = check_classes(estimator)
        self.access: Access = "scores" if hasattr(estimator, "predict_proba") else "labels"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(N, C)`` float64 for ``N`` strings (one-hot labels for a label-only model)."""
        texts = list(texts)
        if not texts or not all(isinstance(text, str) for text in texts):
            raise InputError("a text classifier takes a non-empty list of strings")
        if self.access == "scores":
            return np.asarray(self.estimator.predict_proba(texts), dtype=np.float64)
        labels = np.asarray(self.estimator.predict(texts), dtype=np.int64)
        return np.eye(self.num_classes)[labels]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Labels ``(N,)`` int64."""
        return self.predict_proba(texts).argmax(axis=1)
