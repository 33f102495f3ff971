"""The cascade evaluator: worst case per sample, never weaker than any attack alone."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import ATTACKS
from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD
from bastion.core.ids import sample_keys
from bastion.core.records import AttackSummary
from bastion.core.threat import ThreatModel
from bastion.scan.cascade import random_targets, run_cascade
from bastion.scan.sanity import blackbox_beats_whitebox


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cascade_is_never_weaker_than_an_attack_alone(digits_model, digits_test, fast_params, norm):
    x, y = digits_test
    x, y = x[:100], y[:100]
    keys = sample_keys(x, y)
    threat = ThreatModel(norm=norm, eps=0.1 if norm == "linf" else 0.6)
    attacks = [ATTACKS.create(name, **fast_params[name]) for name in ATTACKS.names()]
    cascade = run_cascade(digits_model, x, y, threat, attacks, keys=keys, seed=3, batch_size=64)
    for attack in attacks:
        if attack.supports(digits_model, threat) is not None:
            continue
        alone = run_cascade(digits_model, x, y, threat, [attack], keys=keys, seed=3, batch_size=50)
        assert cascade.robust_accuracy <= alone.robust_accuracy
        assert not bool((cascade.robust & ~alone.robust).any()), f"{attack.name} alone broke a point the cascade kept"
    assert cascade.robust_accuracy < cascade.clean_accuracy


def test_cascade_records_the_worst_case(digits_model, digits_test):
    x, y = digits_test
    threat = ThreatModel(norm="l2", eps=0.8)
    cascade = run_cascade(digits_model, x, y, threat, [FGSM(), PGD(steps=10)], keys=sample_keys(x, y))
    broken = ~cascade.robust & (cascade.clean_predictions == y)
    assert bool(broken.any())
    assert torch.equal(digits_model.predict(cascade.x_worst[broken]), cascade.adversarial_predictions[broken])
    assert bool((cascade.adversarial_predictions[broken] != y[broken]).all())
    assert float(cascade.distances.max()) <= 0.8 + 1e-5
    assert torch.equal(cascade.x_worst[cascade.robust], x[cascade.robust])
    assert {cascade.broken_by[i] for i in broken.nonzero().squeeze(1).tolist()} <= {"fgsm", "pgd"}
    fgsm, pgd = cascade.attacks
    assert fgsm.points_attacked == int((cascade.clean_predictions == y).sum())
    assert pgd.points_attacked == fgsm.points_attacked - fgsm.points_broken
    assert pgd.robust_accuracy_after == cascade.robust_accuracy
    assert fgsm.queries >= fgsm.points_attacked


def test_cascade_skips_attacks_the_threat_forbids(digits_model, digits_test):
    x, y = digits_test
    threat = ThreatModel(norm="linf", eps=0.1, access="scores")
    cascade = run_cascade(digits_model, x, y, threat, [PGD(steps=5)], keys=sample_keys(x, y))
    assert "the threat model allows only scores" in cascade.attacks[0].skipped
    assert cascade.robust_accuracy == cascade.clean_accuracy


def test_targeted_cascade_reaches_the_targets(digits_model, digits_test):
    x, y = digits_test
    keys = sample_keys(x, y)
    threat = ThreatModel(norm="linf", eps=0.3, targeted=True)
    targets = random_targets(y, keys, 0, 10)
    assert bool((targets != y).all())
    cascade = run_cascade(digits_model, x, y, threat, [PGD(steps=20)], keys=keys, targets=targets)
    broken = ~cascade.robust & (cascade.clean_predictions == y)
    assert bool(broken.any())
    assert torch.equal(cascade.adversarial_predictions[broken], targets[broken])


def test_blackbox_beating_whitebox_is_flagged():
    white = AttackSummary(name="pgd", params={}, access="white", points_broken=3)
    square = AttackSummary(name="square", params={}, access="scores", points_broken=2)
    idle = AttackSummary(name="hopskipjump", params={}, access="labels", points_broken=0)
    assert [f.check for f in blackbox_beats_whitebox([white, square, idle])] == ["black-box-beats-white-box"]
    assert blackbox_beats_whitebox([square, white]) == []
