"""Every registered attack, each norm it supports: in budget and bounds, deterministic, and effective.

Table-driven: a row per attack with parameters small enough for a unit test.
"""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import ATTACKS
from bastion.core.threat import ThreatModel

FAST_PARAMS = {
    "fgsm": {},
    "pgd": {"steps": 10},
    "apgd-ce": {"iterations": 20},
    "apgd-t": {"iterations": 20, "n_target_classes": 3},
    "cw-l2": {"binary_search_steps": 3, "steps": 30, "initial_const": 1.0, "lr": 0.05},
    "square": {"queries": 200},
    "hopskipjump": {"iterations": 8, "initial_evals": 30, "max_evals": 200},
}
EPS = {"linf": 0.15, "l2": 1.0}
CASES = [
    (name, norm)
    for name in ATTACKS.names()
    for norm in ("linf", "l2")
    if norm in ATTACKS.create(name).norms
]


def test_every_registered_attack_is_in_the_table():
    assert set(ATTACKS.names()) == set(FAST_PARAMS)


@pytest.fixture(scope="module")
def correct_points(digits_model, digits_test):
    """The first 60 held-out digits the model classifies correctly."""
    x, y = digits_test
    keep = digits_model.predict(x) == y
    return x[keep][:60], y[keep][:60]


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_attack_contract(digits_model, correct_points, name, norm):
    x, y = correct_points
    threat = ThreatModel(norm=norm, eps=EPS[norm], access=ATTACKS.create(name).access)
    attack = ATTACKS.create(name, **FAST_PARAMS[name])
    result = attack(digits_model, x, y, threat, seed=11)

    size = (result.x_adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)
    assert float(size.max()) <= EPS[norm] + 1e-5, "outside the budget"
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1, "outside the bounds"
    assert torch.equal(result.success, digits_model.predict(result.x_adv) != y), "success not recomputed"
    assert bool((result.queries >= 1).all())

    again = attack(digits_model, x, y, threat, seed=11)
    assert torch.equal(result.x_adv, again.x_adv) and torch.equal(result.success, again.success), "not deterministic"

    accuracy = float((digits_model.predict(result.x_adv) == y).float().mean())
    assert accuracy < 0.9, f"{name} ({norm}) left accuracy at {accuracy:.0%} on points it started at 100%"
