"""The engine distrusts attacks: it projects their output and recomputes success itself."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.base import EvasionAttack
from bastion.core.errors import CapabilityError, ConfigError, InputError
from bastion.core.records import AttackResult
from bastion.core.threat import ThreatModel


class LyingAttack(EvasionAttack):
    """Returns points far outside the budget and bounds and claims it always succeeded."""

    name = "liar"
    access = "white"

    def perturb(self, model, x, y, threat, *, seed, keys, targets):
        x_adv = x + 10.0 * torch.ones_like(x)
        x_adv[0] = float("nan")
        ones = torch.ones(len(x), dtype=torch.bool)
        return AttackResult(x_adv, ones, torch.zeros(len(x)), torch.zeros(len(x), dtype=torch.int64))


class LabelsOnlyAttack(LyingAttack):
    name = "needs-labels"
    access = "labels"
    norms = ("l2",)


def test_engine_projects_and_recomputes_success(digits_model, digits_test):
    x, y = digits_test
    threat = ThreatModel(norm="linf", eps=0.05)
    result = LyingAttack()(digits_model, x, y, threat)
    assert float((result.x_adv - x).abs().max()) <= 0.05 + 1e-6
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    assert torch.isfinite(result.x_adv).all()
    recomputed = digits_model.predict(result.x_adv) != y
    assert torch.equal(result.success, recomputed)
    assert not bool(result.success.all()), "the attack's claim of universal success is not believed"
    unbroken = ~result.success
    assert torch.equal(result.x_adv[unbroken], x[unbroken]), "failed points keep the clean input"


def test_engine_refuses_what_the_threat_forbids(digits_model, digits_test):
    x, y = digits_test
    with pytest.raises(CapabilityError, match="supports l2, not linf"):
        LabelsOnlyAttack()(digits_model, x, y, ThreatModel(eps=0.1))
    with pytest.raises(CapabilityError, match="needs white access; the threat model allows only scores"):
        LyingAttack()(digits_model, x, y, ThreatModel(eps=0.1, access="scores"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y: (x[:, :, :4], y), "per-sample shape"),
        (lambda x, y: (x[:, 0], y), r"expects \(1, 8, 8\): add the channel axis, e.g. x\[:, None\]"),
        (lambda x, y: (x.reshape(len(x), 64), y), r"reshape them, e.g. x.reshape\(len\(x\), 1, 8, 8\)"),
        (lambda x, y: (x, y[:-1]), "labels must have shape"),
        (lambda x, y: (x, y + 10), "the model has 10 classes"),
        (lambda x, y: (x, -y - 1), "the model has 10 classes"),
        (lambda x, y: (torch.cat([x[:3], torch.full_like(x[:1], float("nan")), x[4:]]), y), "NaN"),
        (lambda x, y: (x * 255, y), "outside the bounds"),
        (lambda x, y: (x, y.float()), "int64"),
        (lambda x, y: (x.to(torch.int64), y), "floating point"),
    ],
)
def test_bad_batches_get_clear_errors(digits_model, digits_test, mutate, message):
    x, y = mutate(*digits_test)
    with pytest.raises(InputError, match=message):
        LyingAttack()(digits_model, x, y, ThreatModel(eps=0.1))


def test_numpy_inputs_and_a_loaded_model_are_taken_as_they_come(digits_model, digits_test):
    from bastion.models.loading import LoadedModel

    x, y = digits_test
    loaded = LoadedModel(classifier=digits_model, description="digits", sha256=None, kind="torch")
    threat = ThreatModel(eps=0.05)
    from_numpy = LyingAttack()(loaded, x.numpy(), y.numpy(), threat)
    assert torch.equal(from_numpy.success, LyingAttack()(digits_model, x, y, threat).success)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m, x, y: LyingAttack()(torch.nn.Linear(2, 2), x, y, ThreatModel(eps=0.1)), TypeError, "bastion Classifier"),
    (lambda m, x, y: LyingAttack()(m, x, y, {"norm": "linf", "eps": 0.1}), TypeError, "must be a ThreatModel"),
    (lambda m, x, y: LyingAttack()(m, x, y, ThreatModel(eps=0.1), seed="a"), TypeError, "seed must be an integer"),
    (lambda m, x, y: LyingAttack()(m, x, y, ThreatModel(eps=0.1), keys=torch.arange(3)), InputError,
     "keys must have shape"),
    (lambda m, x, y: LyingAttack()(m, x, ["a"] * len(y), ThreatModel(eps=0.1)), InputError, "array of numbers"),
])
def test_wrong_kinds_of_argument_say_what_to_pass(digits_model, digits_test, call, error, message):
    with pytest.raises(error, match=message):
        call(digits_model, *digits_test)


def test_targets_must_match_the_threat(digits_model, digits_test):
    x, y = digits_test
    with pytest.raises(InputError, match="needs targets"):
        LyingAttack()(digits_model, x, y, ThreatModel(eps=0.1, targeted=True))
    with pytest.raises(InputError, match="differ from the true labels"):
        LyingAttack()(digits_model, x, y, ThreatModel(eps=0.1, targeted=True), targets=y.clone())
    with pytest.raises(ConfigError, match="not targeted"):
        LyingAttack()(digits_model, x, y, ThreatModel(eps=0.1), targets=(y + 1) % 10)


def test_zero_eps_changes_nothing(digits_model, digits_test):
    x, y = digits_test
    result = LyingAttack()(digits_model, x, y, ThreatModel(eps=0.0))
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.success, digits_model.predict(x) != y)
