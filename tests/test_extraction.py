"""Extraction attacks on scikit-learn digits: copies get better with queries, budgets hold, label-only output bites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bastion.attacks.extraction import (
    BudgetedOracle,
    CopyTraining,
    JacobianAugmentation,
    KnockoffNets,
    QueryBudgetExceeded,
)
from bastion.core.errors import InputError
from bastion.defenses.output import LabelOnly
from bastion.defenses.training import train_classifier
from bastion.models.base import QueryCounter
from bastion.models.torch_adapter import TorchClassifier

#: Copies train fast here: a larger rate and fewer steps than the defaults (Adam at 1e-3, >= 1000 steps).
FAST = CopyTraining(epochs=20, lr=1e-2, min_steps=300)


def tiny_mlp() -> nn.Module:
    """The copy: 64 -> 32 -> 10 on flattened 8x8 digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def split(digits_arrays) -> dict[str, np.ndarray]:
    """Victim training data (600), the attacker's pool (900) and held-out evaluation data (297)."""
    x, y = digits_arrays
    return {"x_train": x[:600], "y_train": y[:600], "pool": x[600:1500], "pool_labels": y[600:1500],
            "x_eval": x[1500:], "y_eval": y[1500:]}


@pytest.fixture(scope="module")
def victim(split) -> TorchClassifier:
    """The victim: ``tiny_mlp`` trained 30 epochs on its 600 digits (about 87% held-out accuracy)."""
    torch.manual_seed(0)
    model = TorchClassifier(tiny_mlp(), (1, 8, 8), 10)
    train_classifier(model, split["x_train"], split["y_train"], epochs=30, lr=3e-3, seed=0)
    return model


def knockoff(victim, split, *, budget: int, checkpoints=None, reference=None, groups=None, **options):
    """Knockoff Nets with ``FAST`` copies on the split's pool; ``options`` go to the attack."""
    return KnockoffNets(tiny_mlp, training=FAST, **options).extract(
        victim, split["pool"], budget=budget, x_eval=split["x_eval"], y_eval=split["y_eval"],
        reference=reference, checkpoints=checkpoints, groups=groups, seed=0)


def test_fidelity_rises_with_the_query_budget(victim, split):
    result = knockoff(victim, split, budget=800, checkpoints=[100])
    small, large = result.curve
    assert (small.queries, large.queries, result.queries) == (100, 800, 800)
    assert large.fidelity > small.fidelity + 0.03
    assert result.fidelity == large.fidelity > 0.95 and result.accuracy == large.accuracy > 0.8
    assert result.record.targets == "probabilities" and result.answers.shape == (800, 10)
    # A curve point is exactly what the smaller budget alone gives: same queries, same copy seed.
    alone = knockoff(victim, split, budget=100)
    assert alone.curve == [small]
    torch.testing.assert_close(alone.queried, result.queried[:100])


def test_label_only_output_stops_probabilities_from_beating_labels(victim, split):
    def fidelity(model, output):
        return knockoff(model, split, budget=200, output=output, reference=victim).fidelity

    plain = {output: fidelity(victim, output) for output in ("probabilities", "labels")}
    defended_model = LabelOnly().wrap(victim)
    defended = {output: fidelity(defended_model, output) for output in ("probabilities", "labels")}
    assert plain["probabilities"] > plain["labels"] + 0.03  # undefended, scores carry more than labels
    assert defended["probabilities"] <= defended["labels"] + 0.01
    assert defended["probabilities"] < plain["probabilities"] - 0.03


@pytest.mark.parametrize("attack", [
    KnockoffNets(tiny_mlp, training=FAST),
    KnockoffNets(tiny_mlp, strategy="adaptive", round_size=15, training=FAST),
    JacobianAugmentation(tiny_mlp, seed_size=50, training=FAST),
], ids=["random", "adaptive", "jacobian"])
def test_the_budget_is_never_exceeded(victim, split, attack):
    counted = QueryCounter(victim)
    result = attack.extract(counted, split["pool"], budget=137, x_eval=split["x_eval"], reference=victim, seed=0)
    assert counted.count == result.queries == len(result.queried) == 137
    assert result.record.budget == 137 and result.accuracy is None
    assert [point.queries for point in result.curve] == [137]


def test_a_small_pool_is_queried_once_per_input(victim, split):
    counted = QueryCounter(victim)
    for strategy in ("random", "adaptive"):
        result = KnockoffNets(tiny_mlp, strategy=strategy, training=FAST).extract(
            counted, split["pool"][:30], budget=100, x_eval=split["x_eval"], reference=victim, checkpoints=[10, 50])
        assert result.queries == 30 and [p.queries for p in result.curve] == [10, 30]
        assert len(torch.unique(result.queried.reshape(30, -1), dim=0)) == 30
    assert counted.count == 60


def test_adaptive_sampling_follows_the_bandit_over_the_given_groups(victim, split):
    result = knockoff(victim, split, budget=200, strategy="adaptive", groups=split["pool_labels"] + 100)
    params = result.record.params
    assert params["groups"] == 10 and sum(params["pulls"]) == 200
    assert len(params["final_policy"]) == 10 and abs(sum(params["final_policy"]) - 1) < 1e-3
    assert len(torch.unique(result.queried.reshape(200, -1), dim=0)) == 200
    assert result.fidelity > 0.85


def test_jacobian_augmentation_steps_along_the_substitutes_gradient_sign(victim, split):
    attack = JacobianAugmentation(tiny_mlp, seed_size=50, step=0.1, output="labels", training=FAST)
    result = attack.extract(victim, split["pool"], budget=400, x_eval=split["x_eval"], y_eval=split["y_eval"],
                            checkpoints=[50])
    assert result.record.params["rounds"] == 3 and result.queries == 400
    seeds, first_round = result.queried[:50], result.queried[50:100]
    moved = (first_round - seeds).abs()
    assert float(moved.max()) == pytest.approx(0.1, abs=1e-6) and bool((moved > 0).any())
    assert float(result.queried.min()) >= 0.0 and float(result.queried.max()) <= 1.0
    assert bool(((result.answers.sum(dim=1) == 1) & (result.answers.max(dim=1).values == 1)).all())
    assert result.fidelity > 0.7


def test_the_same_seed_gives_the_same_run(victim, split):
    first, again = (knockoff(victim, split, budget=60, strategy="adaptive", round_size=10) for _ in range(2))
    assert first.record == again.record
    torch.testing.assert_close(first.queried, again.queried)


def test_the_oracle_refuses_a_query_past_the_budget_before_the_victim_sees_it(victim, split):
    oracle = BudgetedOracle(victim, 10, "probabilities")
    oracle.query(torch.from_numpy(split["pool"][:8]))
    with pytest.raises(QueryBudgetExceeded):
        oracle.query(torch.from_numpy(split["pool"][:3]))
    assert oracle.used == 8 and oracle.remaining == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"budget": 0}, "budget must be an integer >= 1"),
    ({"budget": -5}, "budget must be an integer >= 1"),
    ({"budget": 2.5}, "budget must be an integer >= 1"),
    ({"pool": np.zeros((10, 64), dtype=np.float32)}, r"pool must be a non-empty batch of shape \(N, 1, 8, 8\)"),
    ({"pool": np.full((10, 1, 8, 8), 2.0, dtype=np.float32)}, "outside the victim's bounds"),
    ({"pool": np.zeros((10, 1, 8, 8), dtype=np.int64)}, "pool must be floating point"),
    ({"x_eval": np.zeros((5, 8, 8), dtype=np.float32)}, "x_eval must be a non-empty batch"),
    ({"y_eval": np.zeros(3, dtype=np.int64)}, "y_eval must be 297 integer labels"),
    ({"checkpoints": [50, 500]}, r"checkpoints must be .* in 1..100"),
    ({"groups": np.zeros(5, dtype=np.int64)}, "groups must be 900 integers"),
    ({"victim": "http://model"}, "victim must be a bastion Classifier"),
])
def test_bad_input_is_refused_with_a_clear_error(victim, split, change, message):
    arguments = {"victim": victim, "pool": split["pool"], "budget": 100, "x_eval": split["x_eval"],
                 "y_eval": split["y_eval"]} | change
    attack = KnockoffNets(tiny_mlp, strategy="adaptive", training=FAST)
    with pytest.raises(InputError, match=message):
        attack.extract(arguments.pop("victim"), arguments.pop("pool"), **arguments)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: KnockoffNets(tiny_mlp, strategy="greedy"), "unknown strategy 'greedy'"),
    (lambda: KnockoffNets(tiny_mlp, reward="novelty"), "unknown reward 'novelty'"),
    (lambda: KnockoffNets(tiny_mlp, output="logits"), "output must be one of"),
    (lambda: KnockoffNets("tiny_mlp"), "copy_factory must be a callable"),
    (lambda: JacobianAugmentation(tiny_mlp, step=0), "step must be a finite number > 0"),
    (lambda: JacobianAugmentation(tiny_mlp, seed_size=0), "seed_size must be an integer >= 1"),
    (lambda: CopyTraining(epochs=0), "epochs must be an integer >= 1"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_a_factory_that_builds_no_module_is_refused(victim, split):
    attack = KnockoffNets(lambda: "not a module", training=FAST)
    with pytest.raises(InputError, match="must return an nn.Module"):
        attack.extract(victim, split["pool"], budget=10, x_eval=split["x_eval"])
