"""Square Attack (scores) and HopSkipJump (labels) on a small CNN trained on scikit-learn digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.base import ATTACKS
from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.attacks.evasion.square import Square, meta_block, p_schedule
from bastion.core.errors import CapabilityError, ConfigError
from bastion.core.threat import ThreatModel
from bastion.models.torch_adapter import TorchClassifier

EPS = {"linf": 0.15, "l2": 1.0}


@pytest.fixture(scope="module")
def digits(digits_model, digits_test) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """The shared digits CNN with up to 100 held-out points it classifies correctly."""
    x_test, y_test = digits_test
    correct = digits_model.predict(x_test) == y_test
    return digits_model, x_test[correct][:100], y_test[correct][:100]


class ScoresOnly:
    """Offers scores without gradients and fails the test if called with gradients enabled."""

    access = "scores"
    kind = "test"

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.calls = model, 0
        self.num_classes, self.input_shape, self.bounds = 10, model.input_shape, model.bounds

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() and not x.requires_grad
        self.calls += 1
        out = self.model.logits(x)
        assert not out.requires_grad
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(x).argmax(1)


class LabelsOnly(ScoresOnly):
    """Only ``predict`` works; ``logits`` raises."""

    access = "labels"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("a label-only attack asked for scores")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model.predict(x)


def _attack(name: str, norm: str) -> tuple:
    if name == "square":
        threat = ThreatModel(norm=norm, eps=EPS[norm], access="scores")
        return Square(queries=150), threat, ScoresOnly
    hsj = HopSkipJump(iterations=10, initial_evals=30)
    return hsj, ThreatModel(norm=norm, eps=EPS[norm], access="labels"), LabelsOnly


def _check_valid(result, x: torch.Tensor, threat: ThreatModel) -> None:
    delta = (result.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if threat.norm == "linf" else delta.norm(dim=1)
    assert bool((size <= threat.eps + 1e-5).all())
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0


@pytest.mark.parametrize("name", ["square", "hopskipjump"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_within_budget_and_lowers_accuracy(digits, name: str, norm: str) -> None:
    model, x, y = digits
    attack, threat, wrapper = _attack(name, norm)
    black_box = wrapper(model)
    result = attack(black_box, x, y, threat, seed=0)
    _check_valid(result, x, threat)
    assert black_box.calls > 0
    robust = float((model.predict(result.x_adv) == y).float().mean())
    print(f"{name} {norm}: robust accuracy {robust:.2f}")
    assert robust < 0.6, f"{name} {norm}: robust accuracy {robust:.2f} (clean 1.0)"
    assert bool((model.predict(result.x_adv[result.success]) != y[result.success]).all())
    assert result.queries.dtype == torch.int64 and bool((result.queries >= 1).all())
    if name == "square":  # the budget plus the engine's verification pass
        assert int(result.queries.max()) <= attack.queries + 1


@pytest.mark.parametrize("name", ["square", "hopskipjump"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_deterministic_and_batch_invariant(digits, name: str, norm: str) -> None:
    model, x, y = digits
    x, y = x[:30], y[:30]
    attack, threat, _ = _attack(name, norm)
    full = attack(model, x, y, threat, seed=3)
    again = attack(model, x, y, threat, seed=3)
    part = attack(model, x[:12], y[:12], threat, seed=3)
    assert torch.equal(full.x_adv, again.x_adv) and torch.equal(full.queries, again.queries)
    torch.testing.assert_close(part.x_adv, full.x_adv[:12], rtol=0, atol=1e-6)
    assert torch.equal(part.success, full.success[:12])
    assert torch.equal(part.queries, full.queries[:12])
    other = attack(model, x, y, threat, seed=4)
    assert not torch.equal(other.x_adv, full.x_adv)


@pytest.mark.parametrize("name", ["square", "hopskipjump"])
def test_targeted(digits, name: str) -> None:
    model, x, y = digits
    x, y = x[:40], y[:40]
    targets = (y + 1) % 10
    attack, threat, _ = _attack(name, "l2")
    threat = threat.model_copy(update={"targeted": True, "eps": 2.0})
    result = attack(model, x, y, threat, seed=1, targets=targets)
    _check_valid(result, x, threat)
    assert int(result.success.sum()) > 0
    assert bool((model.predict(result.x_adv[result.success]) == targets[result.success]).all())


def test_registered_and_access() -> None:
    assert isinstance(ATTACKS.create("square"), Square)
    assert isinstance(ATTACKS.create("hopskipjump"), HopSkipJump)
    assert Square.access == "scores" and HopSkipJump.access == "labels"
    assert ATTACKS["square"] is Square and "square" in repr(ATTACKS)
    with pytest.raises(ConfigError, match="unknown attack 'sqaure'; known: .*square"):
        ATTACKS["sqaure"]


def test_square_declines_flat_inputs_so_a_scan_records_it_as_skipped() -> None:
    flat = TorchClassifier(nn.Linear(64, 10), (64,), 10)
    x, y = torch.rand(4, 64), torch.zeros(4, dtype=torch.int64)
    threat = ThreatModel(norm="linf", eps=0.1)
    assert "image inputs" in Square(queries=5).supports(flat, threat)
    with pytest.raises(CapabilityError, match="image inputs"):
        Square(queries=5)(flat, x, y, threat)


def test_hopskipjump_works_on_flat_inputs_and_stops_early() -> None:
    torch.manual_seed(0)
    flat = TorchClassifier(nn.Linear(64, 10), (64,), 10)
    x = torch.rand(16, 64)
    y = flat.predict(x)
    result = HopSkipJump(iterations=5, initial_evals=20)(
        flat, x, y, ThreatModel(norm="l2", eps=100.0, access="labels"), seed=0
    )
    started = result.success
    assert bool(started.any())
    # A start within eps needs no iteration: one clean check, noise draws, one binary search.
    assert int(result.queries[started].max()) < 60


def test_square_schedule_and_blocks() -> None:
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 6, 1000) == 0.2  # rescaled: iteration 60 of 10000
    assert p_schedule(0.8, 9999, 10000) == pytest.approx(0.8 / 512)
    block = meta_block(7)
    assert block.shape == (7, 7) and float(block.norm()) == pytest.approx(1.0)
    assert float(block[:3].min()) > 0 and float(block[3:].max()) < 0
