"""Mahalanobis distance to the nearest class in the model's feature space.

Paper: Lee, Lee, Lee, Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
Adversarial Attacks", NeurIPS 2018 (the penultimate-layer score, without their input preprocessing
or layer ensemble).
Fit: class means ``mu_c`` and one covariance shared by all classes (tied, as in the paper) of the
reference features, labelled by ``y_reference`` or, by default, the model's own predictions. The
covariance is shrunk towards a multiple of the identity (Ledoit-Wolf) so it stays invertible and
stable when the feature dimension is large next to the reference set.
Score: ``min_c sqrt((f - mu_c)^T Sigma^-1 (f - mu_c))``; higher = further from every class = more
suspicious.

Features (:func:`detector_features`): for a model with a torch ``module`` (a
:class:`~bastion.models.torch_adapter.TorchClassifier`), the input of its last ``nn.Linear`` layer,
captured by a forward hook (:func:`bastion.defenses.poison.penultimate_features`). Any other
classifier (ONNX, remote, preprocessed) falls back to its logits as features, which separates less
well. Either way the detector runs its own forward pass: logits passed by the caller are not features.
The hook sees every forward pass of the module while it is registered, so do not run the same
module in another thread while this detector scores (the feature helper sees the extra call and
raises InputError).

Calibration: a threshold set on the very points the means and covariance were fitted on would be
too low (they sit closer to their own estimates than new points do: on scikit-learn's digits, 5%
asked, 13-18% of held-out clean digits were flagged in-sample, 4-7% out-of-fold), so fit scores each of
``calibration_folds`` folds of the reference set (every ``k``-th sample) with a Gaussian fitted on
the other folds, and sets the threshold on those out-of-fold scores; the final Gaussian is fitted on
every reference input. Defaults: labels from the model's predictions, 5 folds.

Example:
    >>> MahalanobisDetector().fit(model, x_clean_heldout, y_reference=y_clean_heldout).score(model, x)
"""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from bastion.core.errors import InputError
from bastion.defenses.detectors.base import SCORE_BATCH, InputDetector, model_logits
from bastion.defenses.poison.features import penultimate_features
from bastion.models.base import Classifier


def detector_features(model: Classifier, x: torch.Tensor, *, batch_size: int = SCORE_BATCH) -> np.ndarray:
    """``(N, D)`` float64 features of ``x`` ``(N, *input_shape)``: penultimate features, or logits as a fallback.

    A model with a torch ``module`` gives the inputs of its last ``nn.Linear`` layer (``D`` its
    ``in_features``); any other classifier gives its logits (``D = C``).
    """
    if isinstance(getattr(model, "module", None), torch.nn.Module):
        return penultimate_features(model, x, batch_size=batch_size).astype(np.float64)
    parts = [model_logits(model, x[i : i + batch_size]).cpu().double().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


class MahalanobisDetector(InputDetector):
    """Distance ``(N,)`` from each input's features to the nearest class mean, under a shared shrunk covariance.

    Args:
        calibration_folds: folds for the out-of-fold threshold (default 5, >= 2; 1 calibrates
            in-sample, which flags fewer clean inputs than asked for).

    Learned state: ``classes_`` ``(K,)`` the classes seen in the reference labels, ``means_``
    ``(K, D)``, ``whitener_`` ``(D, D)`` with ``whitener_ @ whitener_.T`` the inverse covariance,
    and ``threshold_``.
    """

    name = "mahalanobis"
    needs_scores = False

    def __init__(self, calibration_folds: int = 5) -> None:
        if isinstance(calibration_folds, bool) or not isinstance(calibration_folds, int) or calibration_folds < 1:
            raise InputError(f"calibration_folds must be an integer >= 1 (default 5), got {calibration_folds!r}")
        self.calibration_folds = calibration_folds

    def fit(self, model: Classifier, x_reference: torch.Tensor, *, false_positive_rate: float = 0.05,
            y_reference: torch.Tensor | None = None) -> Self:
        """As :meth:`InputDetector.fit`; ``y_reference`` ``(N,)`` labels the reference (default: model predictions)."""
        rate, x = self._checked_reference(model, x_reference, false_positive_rate)
        labels = reference_labels(model, x, y_reference)
        features = detector_features(model, x)
        self.classes_, self.means_, self.whitener_ = fit_gaussian(features, labels)
        return self._set_threshold(torch.from_numpy(self._calibration_scores(features, labels)), rate)

    def _calibration_scores(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N,)`` out-of-fold distances of the reference features (in-sample with one fold)."""
        if self.calibration_folds == 1:
            return nearest_class_distance(features, self.means_, self.whitener_)
        folds = np.arange(len(features)) % min(self.calibration_folds, len(features))
        scores = np.empty(len(features))
        for fold in np.unique(folds):
            held_out = folds == fold
            _, means, whitener = fit_gaussian(features[~held_out], labels[~held_out])
            scores[held_out] = nearest_class_distance(features[held_out], means, whitener)
        return scores

    def _score(self, model: Classifier, x: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
        return torch.from_numpy(nearest_class_distance(detector_features(model, x), self.means_, self.whitener_))


def reference_labels(model: Classifier, x: torch.Tensor, y_reference: object) -> np.ndarray:
    """``(N,)`` int64 labels of the reference: ``y_reference`` checked, or the model's predictions."""
    if y_reference is None:
        return np.concatenate([model_logits(model, x[i : i + SCORE_BATCH]).argmax(dim=1).cpu().numpy()
                               for i in range(0, len(x), SCORE_BATCH)])
    labels = y_reference.detach().cpu().numpy() if isinstance(y_reference, torch.Tensor) else np.asarray(y_reference)
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"y_reference must be {len(x)} integer labels of shape ({len(x)},), one per reference "
                         f"input, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise InputError(f"y_reference labels must lie in 0..{model.num_classes - 1}")
    return labels.astype(np.int64)


def fit_gaussian(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes ``(K,)``, class means ``(K, D)`` and a whitener ``(D, D)`` of the tied, Ledoit-Wolf shrunk covariance.

    Features ``(N, D)`` float64, labels ``(N,)``. ``(f - mu) @ whitener`` has about identity covariance.
    """
    from sklearn.covariance import ledoit_wolf

    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    covariance = ledoit_wolf(centred, assume_centered=True)[0]
    values, vectors = np.linalg.eigh(covariance)
    floor = max(float(values.max()), 1e-12) * 1e-10  # a constant feature must not blow the distance up
    whitener = vectors / np.sqrt(np.maximum(values, floor))
    return classes, means, whitener


def nearest_class_distance(features: np.ndarray, means: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """``(N,)`` Mahalanobis distance of each feature row ``(N, D)`` to the nearest of the means ``(K, D)``."""
    z = features @ whitener
    centres = means @ whitener
    squared = (z * z).sum(axis=1)[:, None] - 2.0 * z @ centres.T + (centres * centres).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

