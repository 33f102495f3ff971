"""Output post-processors: they harden the scores, keep every predicted label, and their cost is measurable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.defenses.output import (
    LabelOnly,
    OutputNoise,
    PostprocessedClassifier,
    Rounding,
    TopK,
    accuracy_cost,
)
from bastion.defenses.training import train_classifier
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier


@pytest.fixture(scope="module")
def model(digits_arrays) -> TorchClassifier:
    """A small MLP trained 30 epochs on the first 600 digits."""
    x, y = digits_arrays
    torch.manual_seed(0)
    classifier = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                                 (1, 8, 8), 10)
    train_classifier(classifier, x[:600], y[:600], epochs=30, lr=3e-3, seed=0)
    return classifier


@pytest.fixture(scope="module")
def held_out(digits_arrays) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_arrays
    return torch.from_numpy(x[1500:]), torch.from_numpy(y[1500:])


class FixedScores:
    """A two-class stand-in whose probabilities are given per call (for exact tie cases)."""

    kind = "stub"
    num_classes = 2
    input_shape = (1,)
    bounds = (0.0, 1.0)
    access = "white"

    def __init__(self, probabilities: list[list[float]]) -> None:
        self.scores = torch.tensor(probabilities, dtype=torch.float64).log().float()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores[: len(x)].clone()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)


STEPS = [TopK(k=1), TopK(k=3), TopK(k=3, renormalise=False), Rounding(decimals=1), Rounding(decimals=2),
         LabelOnly(), OutputNoise(scale=0.2), OutputNoise(scale=0.5, distribution="gaussian", space="logits")]


@pytest.mark.parametrize("step", STEPS, ids=repr)
def test_no_step_changes_a_predicted_label_or_the_accuracy(model, held_out, step):
    x, y = held_out
    hardened = step.wrap(model)
    assert isinstance(hardened, Classifier)
    np.testing.assert_array_equal(hardened.predict(x).numpy(), model.predict(x).numpy())
    np.testing.assert_array_equal(hardened.logits(x).argmax(dim=1).numpy(), model.predict(x).numpy())
    probabilities = hardened.probabilities(x)  # rounding may tie the top class with another, never pass it
    labels = model.predict(x)[:, None]
    torch.testing.assert_close(probabilities.gather(1, labels)[:, 0], probabilities.max(dim=1).values)
    cost = accuracy_cost(model, hardened, x, y)
    assert cost.cost == 0.0 and cost.agreement == 1.0 and cost.samples == len(x)
    assert cost.base_accuracy == cost.hardened_accuracy > 0.8


def test_top_k_keeps_the_k_largest_probabilities_and_renormalises(model, held_out):
    x, _ = held_out
    raw = torch.softmax(model.logits(x), dim=1)
    kept = TopK(k=3, renormalise=True).wrap(model).probabilities(x)
    assert bool(((kept > 0).sum(dim=1) == 3).all())
    torch.testing.assert_close(kept.sum(dim=1), torch.ones(len(x)))
    top3 = raw.topk(3, dim=1).indices
    torch.testing.assert_close(kept.gather(1, top3), raw.gather(1, top3) / raw.gather(1, top3).sum(1, keepdim=True))
    unnormalised = TopK(k=3).wrap(model).probabilities(x)
    torch.testing.assert_close(unnormalised.gather(1, top3), raw.gather(1, top3))


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_rounding_gives_rounded_probabilities_that_sum_to_about_one(model, held_out, decimals):
    x, _ = held_out
    rounded = Rounding(decimals=decimals).wrap(model).probabilities(x).double()
    scaled = rounded * 10**decimals
    torch.testing.assert_close(scaled, scaled.round(), atol=1e-4, rtol=0)
    assert float((rounded.sum(dim=1) - 1).abs().max()) <= 10 * 0.5 * 10**-decimals + 1e-6


def test_a_tie_made_by_rounding_is_broken_toward_the_models_label():
    stub = FixedScores([[0.496, 0.504], [0.7, 0.3]])
    hardened = Rounding(decimals=1).wrap(stub)
    x = torch.zeros(2, 1)
    torch.testing.assert_close(hardened.probabilities(x), torch.tensor([[0.5, 0.5], [0.7, 0.3]]))
    assert hardened.logits(x).argmax(dim=1).tolist() == [1, 0] == hardened.predict(x).tolist()


def test_label_only_returns_one_hot_labels_and_label_access(model, held_out):
    x, _ = held_out
    hardened = LabelOnly().wrap(model)
    assert hardened.access == "labels"
    scores = hardened.logits(x)
    torch.testing.assert_close(scores, torch.nn.functional.one_hot(model.predict(x), 10).float())


def test_noise_changes_the_scores_keeps_rows_normalised_and_answers_a_repeated_query_alike(model, held_out):
    x, _ = held_out
    raw = torch.softmax(model.logits(x), dim=1)
    hardened = OutputNoise(scale=0.1).wrap(model)
    noisy = hardened.probabilities(x)
    assert float((noisy - raw).abs().max()) > 0.05 and bool((noisy >= 0).all())
    torch.testing.assert_close(noisy.sum(dim=1), torch.ones(len(x)))
    torch.testing.assert_close(hardened.probabilities(x[5:9]), noisy[5:9])  # keyed by content, not batch
    other_seed = OutputNoise(scale=0.1, seed=1).wrap(model).probabilities(x)
    assert not torch.equal(other_seed, noisy)
    assert OutputNoise(scale=0.0).wrap(model).probabilities(x).sub(raw).abs().max() < 1e-6


def test_hardened_models_offer_scores_without_gradients(model, held_out):
    x, _ = held_out
    steps = [TopK(k=2), Rounding(decimals=2)]
    hardened = PostprocessedClassifier(model, steps)
    assert model.access == "white" and hardened.access == "scores"
    assert not hardened.logits(x.clone().requires_grad_(True)).requires_grad
    assert hardened.get_params() == {"steps": [{"name": "top-k", "params": {"k": 2, "renormalise": False}},
                                               {"name": "rounding", "params": {"decimals": 2}}],
                                     "access": "scores"}
    assert PostprocessedClassifier(model, [LabelOnly(), Rounding()]).access == "labels"


def test_the_cost_record_shows_how_much_each_defense_distorts_the_scores(model, held_out):
    x, y = held_out
    distortion = {name: accuracy_cost(model, step.wrap(model), x, y).distortion
                  for name, step in [("round-2", Rounding(decimals=2)), ("top-3", TopK(k=3)),
                                     ("noise-0.1", OutputNoise(scale=0.1)), ("label-only", LabelOnly())]}
    assert distortion["round-2"] < 0.05
    assert 0.0 < distortion["top-3"] < distortion["label-only"]
    assert distortion["noise-0.1"] > distortion["round-2"]
    assert accuracy_cost(model, model, x, y).distortion == 0.0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: TopK(k=0), "k must be an integer >= 1"),
    (lambda: Rounding(decimals=0), "decimals must be an integer >= 1"),
    (lambda: OutputNoise(scale=-0.1), "scale must be a finite number >= 0"),
    (lambda: OutputNoise(distribution="cauchy"), "distribution must be"),
    (lambda: OutputNoise(space="pixels"), "space must be"),
    (lambda: PostprocessedClassifier("model", [TopK()]), "must be a bastion Classifier"),
])
def test_bad_parameters_are_refused(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_bad_steps_and_inputs_are_refused(model, held_out):
    x, y = held_out
    with pytest.raises(InputError, match="post-processors"):
        PostprocessedClassifier(model, [lambda p: p])
    with pytest.raises(InputError, match="k=11 is more than"):
        TopK(k=11).wrap(model).logits(x)
    with pytest.raises(InputError, match="random: pass keys"):
        OutputNoise()(torch.full((2, 10), 0.1))
    with pytest.raises(InputError, match=r"shape \(N, C\)"):
        TopK()(torch.ones(10))
    with pytest.raises(InputError, match="non-empty"):
        accuracy_cost(model, LabelOnly().wrap(model), x, y[:5])
