"""Certified training: IBP and CROWN-IBP raise verified accuracy well above plain training; schedules,
BatchNorm statistics, the initialisation and the errors behave as documented."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.certify.bounds import certify_bounds
from bastion.core.errors import InputError
from bastion.core.threat import ThreatModel
from bastion.defenses.training import CrossEntropy, fit, objective_from_name
from bastion.defenses.training.certified import CrownIBPObjective, IBPObjective, ibp_init, ramp_fraction
from bastion.models.torch_adapter import TorchClassifier

EPS = 0.1


@pytest.fixture(scope="module")
def digits_flat(digits_arrays) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    x, y = digits_arrays
    x = x.reshape(len(x), -1)
    return x[:1200], y[:1200], torch.from_numpy(x[1200:1500]), torch.from_numpy(y[1200:1500])


def _mlp() -> TorchClassifier:
    torch.manual_seed(0)
    return TorchClassifier(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), (64,), 10)


def _train(objective, data) -> TorchClassifier:
    x, y, _, _ = data
    model = _mlp()
    fit(model, x, y, objective, epochs=20, batch_size=64, optimizer="adam", lr=3e-3, seed=0)
    return model


def _verified(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, method: str) -> float:
    certificates = certify_bounds(model, x, y, eps=EPS, method=method)
    return float(np.mean([c.certifies(int(label), EPS) for c, label in zip(certificates, y, strict=True)]))


@pytest.fixture(scope="module")
def plain_model(digits_flat) -> TorchClassifier:
    return _train(CrossEntropy(), digits_flat)


def test_ibp_training_raises_verified_accuracy_well_above_plain_training(digits_flat, plain_model) -> None:
    _, _, x_test, y_test = digits_flat
    model = _train(IBPObjective(ThreatModel(eps=EPS)), digits_flat)
    clean = float((model.predict(x_test) == y_test).float().mean())
    assert clean >= 0.85
    assert _verified(plain_model, x_test, y_test, "ibp") <= 0.05
    assert _verified(model, x_test, y_test, "ibp") >= 0.4
    assert _verified(model, x_test, y_test, "crown") >= _verified(plain_model, x_test, y_test, "crown") + 0.2


def test_crown_ibp_training_raises_verified_accuracy(digits_flat, plain_model) -> None:
    _, _, x_test, y_test = digits_flat
    model = _train(CrownIBPObjective(ThreatModel(eps=EPS)), digits_flat)
    assert _verified(model, x_test, y_test, "crown-ibp") >= _verified(plain_model, x_test, y_test, "crown-ibp") + 0.2


def test_schedules_warm_up_ramp_and_hold() -> None:
    objective = CrownIBPObjective(ThreatModel(eps=0.2), eps_train=0.22, warmup=0.2, ramp=0.5)
    grid = [i / 100 for i in range(101)]
    eps = [objective.eps_at(p) for p in grid]
    assert eps[0] == 0 and objective.eps_at(0.2) == 0 and objective.eps_at(0.7) == pytest.approx(0.22)
    assert eps == sorted(eps) and max(b - a for a, b in zip(eps, eps[1:], strict=False)) < 0.22 * 0.05  # no jumps
    assert objective.kappa_at(0.1) == 1 and objective.kappa_at(0.95) == 0
    assert objective.beta_at(0.0) == 1 and objective.beta_at(0.45) == pytest.approx(0.5)
    # The smooth ramp starts slowly (polynomial) and is continuous where it turns linear.
    assert ramp_fraction(0.1, 0.0, 1.0, "smooth") < 0.1 * ramp_fraction(0.1, 0.0, 1.0, "linear")
    assert ramp_fraction(0.25, 0.0, 1.0, "smooth") == pytest.approx(ramp_fraction(0.25 - 1e-9, 0.0, 1.0, "smooth"))
    assert ramp_fraction(0.5, 0.5, 0.0, "linear") == 1.0


def test_loss_is_clean_cross_entropy_during_warmup_and_differentiable_after() -> None:
    model = _mlp()
    x = torch.rand(16, 64)
    y = torch.randint(0, 10, (16,))
    objective = IBPObjective(ThreatModel(eps=EPS), kappa_end=0.0, warmup=0.5, ramp=0.0)
    with model.trainable() as module:
        warm = objective.loss(model, module, x, y, progress=0.1, seed=0, keys=torch.arange(16))
        assert warm.item() == pytest.approx(F.cross_entropy(module(x), y).item())
        robust = objective.loss(model, module, x, y, progress=0.9, seed=0, keys=torch.arange(16))
        assert robust.item() > warm.item()
        robust.backward()
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


def test_batch_norm_bounds_use_the_batch_statistics_in_train_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model = TorchClassifier(net, (64,), 10)
    x = torch.rand(32, 64)
    y = torch.randint(0, 10, (32,))
    # With a tiny eps and no clean term, the robust loss is the cross-entropy of the train-mode logits.
    objective = IBPObjective(ThreatModel(eps=1e-6), kappa_start=0.0, kappa_end=0.0, warmup=0.0, ramp=0.0)
    with model.trainable() as module:
        loss = objective.loss(model, module, x, y, progress=0.5, seed=0, keys=torch.arange(32))
        module.train()
        expected = F.cross_entropy(module(x), y)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-3)


def test_ibp_init_scales_weights_by_fan_in() -> None:
    net = ibp_init(nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(400, 300)))
    conv, linear = net[0], net[3]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 * math.pi) / 27, rel=0.1)
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 * math.pi) / 400, rel=0.1)
    assert float(conv.bias.detach().abs().sum() + linear.bias.detach().abs().sum()) == 0


def test_objectives_are_built_by_name_and_record_their_parameters() -> None:
    threat = ThreatModel(norm="l2", eps=0.5)
    objective = objective_from_name("crown-ibp", threat, beta_end=0.1, schedule="linear")
    assert isinstance(objective, CrownIBPObjective) and objective.name == "crown-ibp"
    params = json.loads(json.dumps(objective.params()))
    assert params["beta_end"] == 0.1 and params["eps_train"] == 0.5 and params["threat"]["norm"] == "l2"
    assert isinstance(objective_from_name("ibp", threat), IBPObjective)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps_train": 0.0}, "eps_train must be a finite number > 0"),
        ({"eps_train": math.nan}, "eps_train must be a finite number > 0"),
        ({"warmup": 0.6, "ramp": 0.6}, "warmup \\+ ramp must be at most 1"),
        ({"warmup": -0.1}, r"warmup must be a number in \[0, 1\]"),
        ({"schedule": "cosine"}, "schedule must be 'linear' or 'smooth'"),
        ({"kappa_end": 1.5}, r"kappa_end must be a number in \[0, 1\]"),
        ({"beta_start": 2.0}, r"beta_start must be a number in \[0, 1\]"),
    ],
)
def test_bad_options_raise_clear_errors(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        CrownIBPObjective(ThreatModel(eps=0.1), **options)


def test_threat_model_must_fit_the_model() -> None:
    with pytest.raises(InputError, match="eps > 0"):
        IBPObjective(ThreatModel(eps=0.0))
    model = _mlp()
    objective = IBPObjective(ThreatModel(eps=0.1, bounds=(-1.0, 1.0)))
    with model.trainable() as module, pytest.raises(InputError, match="differ from the model's bounds"):
        objective.loss(model, module, torch.rand(4, 64), torch.zeros(4, dtype=torch.int64), progress=0.5,
                       seed=0, keys=torch.arange(4))
