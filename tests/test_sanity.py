"""Gradient-masking sanity checks fire on models that mask gradients and stay quiet otherwise."""

from __future__ import annotations

import torch
from torch import nn

from bastion.core.records import EpsResult
from bastion.models.torch_adapter import TorchClassifier
from bastion.scan.sanity import eps_curve_flags, probe_model


class Wrapped(nn.Module):
    def __init__(self, inner: nn.Module, how: str) -> None:
        super().__init__()
        self.inner, self.how = inner, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "quantise":  # a non-differentiable preprocessing step: zero gradients
            x = torch.round(x * 4) / 4
        logits = self.inner(x)
        if self.how == "softmax":
            return logits.softmax(dim=1)
        if self.how == "noise":
            return logits + torch.randn_like(logits)
        if self.how == "nan":
            return logits * float("nan")
        return logits


def _checks(model, digits_test, how):
    x, y = digits_test
    wrapped = TorchClassifier(Wrapped(model.module, how), (1, 8, 8), 10)
    return {flag.check for flag in probe_model(wrapped, x, y)}


def test_a_plain_model_raises_no_flag(digits_model, digits_test):
    assert _checks(digits_model, digits_test, "none") == set()


def test_probability_outputs_are_flagged(digits_model, digits_test):
    assert "probability-outputs" in _checks(digits_model, digits_test, "softmax")


def test_randomness_is_flagged(digits_model, digits_test):
    assert "randomness" in _checks(digits_model, digits_test, "noise")


def test_nan_outputs_are_flagged_as_such_not_as_randomness(digits_model, digits_test):
    checks = _checks(digits_model, digits_test, "nan")
    assert "non-finite-outputs" in checks and "randomness" not in checks


def test_zero_gradients_are_flagged(digits_model, digits_test):
    assert "zero-gradients" in _checks(digits_model, digits_test, "quantise")


def _result(eps: float, robust: float) -> EpsResult:
    return EpsResult(eps=eps, clean_accuracy=0.9, robust_accuracy=robust, attacks=[], per_class=[],
                     flags=[], samples=[], seconds=0.0)


def test_robust_accuracy_rising_with_eps_is_flagged():
    assert eps_curve_flags([_result(0.1, 0.5), _result(0.05, 0.7), _result(0.2, 0.3)]) == []
    flags = eps_curve_flags([_result(0.1, 0.5), _result(0.2, 0.6)])
    assert [f.check for f in flags] == ["non-monotone-eps"]


def test_chance_level_accuracy_is_flagged():
    from bastion.scan.sanity import chance_level_flags

    assert [f.check for f in chance_level_flags(0.15, 10)] == ["chance-level-accuracy"]
    assert chance_level_flags(0.9, 10) == []
    assert chance_level_flags(0.55, 2) != [] and chance_level_flags(0.8, 2) == []
