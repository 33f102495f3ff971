"""APGD-CE, APGD-T and CW-L2 on a small CNN trained on scikit-learn's 8x8 digits."""

from __future__ import annotations

import copy

import pytest
import torch

from bastion.attacks.base import ATTACKS, EvasionAttack
from bastion.attacks.evasion.apgd import APGD, APGDTargeted, checkpoints
from bastion.attacks.evasion.cw import CarliniWagnerL2, update_constants
from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.norms import distance
from bastion.core.errors import CapabilityError
from bastion.core.threat import ThreatModel
from bastion.models.torch_adapter import TorchClassifier

EPS = {"linf": 0.1, "l2": 0.5}
CONFIGS = [("apgd-ce", "linf"), ("apgd-ce", "l2"), ("apgd-t", "linf"), ("apgd-t", "l2"),
           ("cw-l2", "l2")]


@pytest.fixture(scope="module")
def digits(digits_model, digits_test) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """The shared digits CNN with its 200 held-out points."""
    return digits_model, *digits_test


def fast(name: str) -> EvasionAttack:
    """The attack with fewer iterations than its defaults (enough on this model)."""
    if name == "apgd-ce":
        return APGD(iterations=25)
    if name == "apgd-t":
        return APGDTargeted(n_target_classes=3, iterations=25)
    return CarliniWagnerL2(binary_search_steps=4, steps=40)


def accuracy(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).float().mean())


@pytest.mark.parametrize(("name", "norm"), CONFIGS)
def test_valid_effective_deterministic_and_batch_invariant(digits, name: str, norm: str) -> None:
    model, x, y = digits
    threat = ThreatModel(norm=norm, eps=EPS[norm])
    attack = fast(name)
    result = attack(model, x, y, threat, seed=3)
    # Inside the ball and the bounds.
    assert float(distance(result.x_adv - x, norm).max()) <= threat.eps + 1e-5
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    # Lowers accuracy clearly.
    assert accuracy(model, result.x_adv, y) < accuracy(model, x, y) - 0.2
    assert bool((model.predict(result.x_adv[result.success]) != y[result.success]).all())
    # Deterministic under a seed.
    again = attack(model, x, y, threat, seed=3)
    assert torch.equal(again.x_adv, result.x_adv) and torch.equal(again.success, result.success)
    assert torch.equal(again.queries, result.queries)
    # A sample's result does not depend on the rest of its batch.
    k = 40
    part = attack(model, x[:k], y[:k], threat, seed=3)
    assert torch.equal(part.success, result.success[:k])
    assert torch.equal(part.queries, result.queries[:k])
    assert torch.equal(part.x_adv, result.x_adv[:k])


def test_apgd_early_stop_spends_no_steps_on_broken_points(digits) -> None:
    model, x, y = digits
    result = APGD(iterations=25)(model, x, y, ThreatModel(norm="linf", eps=0.1), seed=0)
    budget = 25 + 1 + 1  # evaluations of x^(0..25) plus the engine's verification
    assert int(result.queries.max()) == budget
    assert int(result.queries[result.success].max()) < budget
    assert int(result.queries[~result.success].min()) == budget


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_at_least_as_strong_as_pgd(digits, norm: str) -> None:
    model, x, y = digits
    threat = ThreatModel(norm=norm, eps=EPS[norm])
    pgd = PGD(steps=50)(model, x, y, threat, seed=1)
    apgd = APGD(iterations=50)(model, x, y, threat, seed=1)
    assert int(apgd.success.sum()) >= int(pgd.success.sum())


@pytest.mark.parametrize(
    "attack",
    [APGDTargeted(iterations=25), APGD(iterations=25), CarliniWagnerL2()],
    ids=["apgd-t", "apgd-ce", "cw-l2"],
)
def test_targeted_threat_uses_given_targets(digits, attack: EvasionAttack) -> None:
    model, x, y = digits
    targets = (y + 1) % 10
    threat = ThreatModel(norm="l2", eps=1.0, targeted=True)
    result = attack(model, x, y, threat, seed=0, targets=targets)
    assert int(result.success.sum()) > 20
    assert torch.equal(model.predict(result.x_adv[result.success]), targets[result.success])
    assert float(distance(result.x_adv - x, "l2").max()) <= 1.0 + 1e-5


def test_dtype_agnostic(digits) -> None:
    model, x, y = digits
    net64 = copy.deepcopy(model.module).double()
    model64 = TorchClassifier(net64, (1, 8, 8), 10)
    x64 = x[:20].double()
    for attack in (APGD(iterations=5), APGDTargeted(n_target_classes=2, iterations=5),
                   CarliniWagnerL2(binary_search_steps=2, steps=5)):
        result = attack(model64, x64, y[:20], ThreatModel(norm="l2", eps=0.5), seed=0)
        assert result.x_adv.dtype == torch.float64


def test_checkpoints_follow_the_paper() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(0 < w <= 10 for w in checkpoints(10))


def test_cw_binary_search_and_capabilities(digits) -> None:
    const, lower, upper = update_constants(
        torch.tensor([0.01, 0.01, 1.0]), torch.zeros(3), torch.tensor([1e11, 1e11, 4.0]),
        torch.tensor([False, True, False]),
    )
    assert torch.allclose(const, torch.tensor([0.1, 0.005, 2.5]))
    assert torch.allclose(lower, torch.tensor([0.01, 0.0, 1.0]))
    assert torch.allclose(upper, torch.tensor([1e11, 0.01, 4.0]))
    model, x, y = digits
    with pytest.raises(CapabilityError):
        CarliniWagnerL2()(model, x[:2], y[:2], ThreatModel(norm="linf", eps=0.1))
    assert {"apgd-ce", "apgd-t", "cw-l2"} <= set(ATTACKS.names())
    assert ATTACKS.create("apgd-ce", loss="dlr").params()["loss"] == "dlr"
