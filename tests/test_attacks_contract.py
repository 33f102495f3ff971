"""Every registered attack, each norm it supports: in budget and bounds, deterministic, and effective.

Table-driven: a row per attack with parameters small enough for a unit test.
"""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import ATTACKS
from bastion.core.threat import ThreatModel

EPS = {"linf": 0.15, "l2": 1.0}
CASES = [
    (name, norm)
    for name in ATTACKS.names()
    for norm in ("linf", "l2")
    if norm in ATTACKS.create(name).norms
]


def test_every_registered_attack_is_in_the_table(fast_params):
    assert set(ATTACKS.names()) == set(fast_params)


@pytest.fixture(scope="module")
def correct_points(digits_model, digits_test):
    """The first 60 held-out digits the model classifies correctly."""
    x, y = digits_test
    keep = digits_model.predict(x) == y
    return x[keep][:60], y[keep][:60]


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_attack_contract(digits_model, correct_points, fast_params, name, norm):
    x, y = correct_points
    threat = ThreatModel(norm=norm, eps=EPS[norm], access=ATTACKS.create(name).access)
    attack = ATTACKS.create(name, **fast_params[name])
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
