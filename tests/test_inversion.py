"""Model inversion (MI-Face): reconstructions the model is sure of, inside the bounds; white-box only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.inference import InversionResult, MIFace
from bastion.attacks.inference.inversion import _total_variation
from bastion.core.errors import CapabilityError, InputError
from bastion.data.sources import load_dataset
from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier


@pytest.fixture(scope="module")
def digits_mlp() -> TorchClassifier:
    """A 64-unit MLP trained 30 epochs on ``digits:train`` (1257 images)."""
    torch.set_num_threads(1)
    data = load_dataset("digits:train")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = TorchClassifier(net, (1, 8, 8), 10)
    train_classifier(model, data.x, data.y, epochs=30, batch_size=100, lr=3e-3, seed=0)
    return model


@pytest.fixture(scope="module")
def inverted(digits_mlp) -> InversionResult:
    return MIFace(steps=200, lr=0.05).invert(digits_mlp)


def test_every_class_is_reconstructed_with_high_confidence_from_a_grey_start(digits_mlp, inverted):
    start = torch.full((10, 1, 8, 8), 0.5)
    start_confidence = torch.softmax(digits_mlp.logits(start), dim=1).diagonal()
    assert inverted.reconstructions.shape == (10, 1, 8, 8)
    assert torch.equal(inverted.classes, torch.arange(10))
    assert float(start_confidence.max()) < 0.9  # grey is no digit: at most one class is likely at the start
    assert bool((inverted.confidences > 0.95).all())
    assert bool((inverted.costs <= 1 - inverted.confidences + 1e-6).all())


def test_reconstructions_stay_inside_the_bounds_and_confidences_are_rechecked(digits_mlp, inverted):
    assert float(inverted.reconstructions.min()) >= 0.0 and float(inverted.reconstructions.max()) <= 1.0
    recomputed = torch.softmax(digits_mlp.logits(inverted.reconstructions), dim=1).diagonal()
    torch.testing.assert_close(recomputed, inverted.confidences)


def test_inversion_stops_once_every_class_is_sure_and_is_deterministic(digits_mlp, inverted):
    assert 0 < inverted.steps < 200  # stop_cost 0.01 reached before the step budget
    again = MIFace(steps=200, lr=0.05).invert(digits_mlp)
    assert torch.equal(again.reconstructions, inverted.reconstructions) and again.steps == inverted.steps


def test_the_tv_prior_gives_smoother_images(digits_mlp, inverted):
    smooth = MIFace(steps=200, lr=0.05, tv_weight=0.1, stop_cost=0.0).invert(digits_mlp, classes=[3, 7])
    assert torch.equal(smooth.classes, torch.tensor([3, 7]))
    assert bool((_total_variation(smooth.reconstructions) < _total_variation(inverted.reconstructions[[3, 7]])).all())
    assert bool((smooth.confidences > 0.5).all())
    assert smooth.params["tv_weight"] == 0.1 and smooth.steps == 200


class ScoresOnly:
    """The digits model behind an endpoint that returns scores but no gradients."""

    access = "scores"
    kind = "test"

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.num_classes = model, model.num_classes
        self.input_shape, self.bounds = model.input_shape, model.bounds

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.logits(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(x)


def test_inversion_needs_white_box_access(digits_mlp):
    with pytest.raises(CapabilityError, match="mi-face needs white access; the model offers only scores"):
        MIFace().invert(ScoresOnly(digits_mlp))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"tv_weight": -1.0}, "tv_weight must be >= 0"),
    ({"start": float("nan")}, "start must be a finite number"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(InputError, match=message):
        MIFace(**kwargs)


@pytest.mark.parametrize(("attack", "classes", "message"), [
    (MIFace(), [0, 10], r"classes must lie in 0\.\.9"),
    (MIFace(), [], "non-empty 1-D list"),
    (MIFace(start=2.0), None, r"outside the model's bounds \[0\.0, 1\.0\]"),
    (MIFace(start=torch.zeros(1, 4, 4)), None, r"start must have shape \(1, 8, 8\)"),
])
def test_bad_classes_and_starts_are_refused(digits_mlp, attack, classes, message):
    with pytest.raises(InputError, match=message):
        attack.invert(digits_mlp, classes)


def test_the_tv_prior_needs_images():
    tabular = TorchClassifier(nn.Linear(5, 3), (5,), 3)
    with pytest.raises(InputError, match="TV prior needs inputs with at least 2 axes"):
        MIFace(tv_weight=0.1).invert(tabular)
    assert MIFace(steps=5).invert(tabular).reconstructions.shape == (3, 5)
