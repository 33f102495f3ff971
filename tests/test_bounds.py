"""IBP and CROWN bounds: sound on sampled and attacked points, exact at eps 0, CROWN never looser than IBP,
exact layer folding, and errors that name what to fix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.norms import project
from bastion.certify.bounds import (
    certified_accuracy,
    certified_radius,
    certify_bounds,
    logit_bounds,
    margin_bounds,
    margin_spec,
)
from bastion.certify.crown import BackwardBounds, crown_lower
from bastion.certify.ibp import InputRegion, interval_bounds
from bastion.certify.network import build_chain
from bastion.certify.ops import Conv
from bastion.core.errors import CapabilityError, ConfigError, InputError
from bastion.core.threat import ThreatModel
from bastion.models.torch_adapter import TorchClassifier

METHODS = ("ibp", "crown-ibp", "crown")
EPS = {"linf": 0.05, "l2": 0.4}


class TracedNet(nn.Module):
    """A chain written as a forward method (read with torch.fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.head = nn.Sequential(nn.Linear(3 * 6 * 6, 12), nn.ReLU())
        self.out = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = x.view(x.size(0), -1)
        return self.out(self.head(x))


def _randomise_batch_norm(module: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            size = layer.num_features
            layer.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            layer.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)
    return module


def _network(kind: str) -> TorchClassifier:
    """Small random networks, one per supported layer type (a row per kind)."""
    torch.manual_seed(0)
    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 10))
        return TorchClassifier(net, (1, 8, 8), 10)
    if kind == "cnn-avgpool":
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                            nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 10))
        return TorchClassifier(net, (1, 8, 8), 10)
    if kind == "cnn-maxpool":
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(4, 6, 3, padding=2, dilation=2), nn.ReLU(),
                            nn.MaxPool2d(3, stride=1, padding=1),  # overlapping windows
                            nn.Flatten(), nn.Linear(96, 10))
        return TorchClassifier(net, (1, 8, 8), 10)
    if kind == "conv-pool-conv":  # pooling straight after a conv; padded convs on both sides of it
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 10))
        return TorchClassifier(net, (1, 8, 8), 10)
    if kind == "batchnorm":
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                            nn.Sequential(nn.Linear(144, 16), nn.BatchNorm1d(16), nn.ReLU()), nn.Linear(16, 10))
        return TorchClassifier(_randomise_batch_norm(net), (1, 8, 8), 10)
    if kind == "normalised":  # per-channel mean/std before a padded conv (kept as its own op)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
        return TorchClassifier(net, (3, 6, 6), 10, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    if kind == "normalised-cnn":  # windowed CROWN through the kept normalisation and a strided conv
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 2, stride=2), nn.ReLU(),
                            nn.Flatten(), nn.Linear(45, 10))
        return TorchClassifier(net, (3, 6, 6), 10, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    if kind == "normalised-mlp":  # mean/std folded into the first Linear
        net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 10))
        return TorchClassifier(net, (20,), 10, mean=[0.5], std=[0.3])
    if kind == "traced":
        return TorchClassifier(TracedNet(), (1, 8, 8), 10)
    raise ValueError(kind)


KINDS = ("mlp", "cnn-avgpool", "cnn-maxpool", "conv-pool-conv", "batchnorm", "normalised", "normalised-cnn",
         "normalised-mlp", "traced")


def _inputs(model: TorchClassifier, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(count, *model.input_shape, generator=generator)
    return x, model.predict(x)


def _samples_in_ball(x: torch.Tensor, norm: str, eps: float, per_point: int) -> torch.Tensor:
    """``(per_point, N, ...)`` random points of the ball within [0, 1]; for linf half are vertices."""
    generator = torch.Generator().manual_seed(5)
    noise = torch.rand(per_point, *x.shape, generator=generator) * 2 - 1
    if norm == "linf":
        noise[: per_point // 2] = noise[: per_point // 2].sign()
        delta = noise * eps
    else:
        direction = torch.randn(per_point, *x.shape, generator=generator)
        size = direction.flatten(2).norm(dim=2).reshape(per_point, len(x), *([1] * (x.ndim - 1)))
        radius = torch.rand(per_point, len(x), *([1] * (x.ndim - 1)), generator=generator) ** 0.25
        delta = direction / size * radius * eps
    return (x + delta).clamp(0, 1)


def _true_margins(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits = model.logits(x)
    return logits.gather(1, y[:, None]) - logits


def _pgd_points(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    threat = ThreatModel(norm=norm, eps=eps, bounds=model.bounds)
    proposed = PGD(steps=20, early_stop=False).perturb(model, x, y, threat, seed=0, keys=torch.arange(len(x)),
                                                       targets=None)
    return project(proposed.x_adv, x, norm, eps, model.bounds)


@pytest.mark.parametrize("kind", KINDS)
def test_folded_chain_computes_the_model(kind: str) -> None:
    model = _network(kind)
    x, _ = _inputs(model, 8)
    chain = build_chain(model)
    assert torch.allclose(chain.forward(x), model.logits(x), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_bounds_hold_on_sampled_and_attacked_points(kind: str, norm: str) -> None:
    model = _network(kind)
    x, y = _inputs(model)
    eps = EPS[norm]
    points = torch.cat([_samples_in_ball(x, norm, eps, 48), _pgd_points(model, x, y, norm, eps)[None]])
    margins = torch.stack([_true_margins(model, p, y) for p in points])  # (P, N, C)
    with torch.no_grad():
        logits = torch.stack([model.logits(p) for p in points])
    for method in METHODS:
        lower = margin_bounds(model, x, y, eps=eps, norm=norm, method=method)
        assert bool((lower[None] <= margins + 1e-5).all()), f"{method} margin bound above a reachable margin"
        assert bool((lower.gather(1, y[:, None]) == 0).all())
        logit_lower, logit_upper = logit_bounds(model, x, eps=eps, norm=norm, method=method)
        assert bool((logit_lower[None] <= logits + 1e-5).all() and (logits <= logit_upper[None] + 1e-5).all())


class _AtPoint:
    """Stands in for the input region: evaluates CROWN's linear bound at one point instead of minimising it."""

    def __init__(self, point: torch.Tensor) -> None:
        self.center = point

    def concretize(self, coeffs: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nsd,nd->ns", coeffs.flatten(2), self.center.flatten(1)) + bias


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_crown_linear_bounds_and_intervals_hold_pointwise(kind: str, norm: str) -> None:
    """Sharper than checking concretized bounds: every intermediate interval contains the activations of
    sampled points, and CROWN's linear lower bound of the margins lies below the margins at each point."""
    model = _network(kind)
    x, y = _inputs(model)
    chain = build_chain(model)
    region = InputRegion.around(x, norm, EPS[norm], model.bounds)
    solver = BackwardBounds(chain, region, intersect=False)
    solver.bounds = interval_bounds(chain, region, refine=solver.refine)
    spec = margin_spec(y, 10)
    for point in _samples_in_ball(x, norm, EPS[norm], 32):
        activation = point
        for op, (lower, upper) in zip(chain.ops, solver.bounds, strict=False):
            assert bool((lower <= activation + 1e-5).all() and (activation <= upper + 1e-5).all()), op.name
            activation = op.forward(activation)
        solver.region = _AtPoint(point)  # type: ignore[assignment]
        assert bool((solver.lower(len(chain.ops), spec) <= _true_margins(model, point, y) + 1e-5).all())


@pytest.mark.parametrize("kind", KINDS)
def test_crown_is_never_looser_than_ibp_and_tighter_somewhere(kind: str) -> None:
    model = _network(kind)
    x, y = _inputs(model)
    for norm in ("linf", "l2"):
        ibp = margin_bounds(model, x, y, eps=EPS[norm], norm=norm, method="ibp")
        for method in ("crown-ibp", "crown"):
            tighter = margin_bounds(model, x, y, eps=EPS[norm], norm=norm, method=method)
            assert bool((tighter >= ibp - 1e-5).all()), method
        assert float((tighter - ibp).max()) > 1e-3  # CROWN must improve on IBP somewhere


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_eps_zero_gives_the_exact_outputs(kind: str, method: str) -> None:
    model = _network(kind)
    x, y = _inputs(model)
    for norm in ("linf", "l2"):
        lower = margin_bounds(model, x, y, eps=0.0, norm=norm, method=method)
        assert torch.allclose(lower, _true_margins(model, x, y), atol=1e-4)
        logit_lower, logit_upper = logit_bounds(model, x, eps=0.0, norm=norm, method=method)
        assert torch.allclose(logit_lower, model.logits(x), atol=1e-4)
        assert torch.allclose(logit_upper, model.logits(x), atol=1e-4)


def test_bounds_widen_with_eps_and_respect_the_input_bounds() -> None:
    model = _network("mlp")
    x, y = _inputs(model)
    small, large = (margin_bounds(model, x, y, eps=e, method="crown") for e in (0.01, 0.1))
    assert bool((large <= small + 1e-6).all())
    # An eps larger than the whole input range: the ball is the box [0, 1] itself, so a bigger eps changes nothing.
    whole, bigger = (margin_bounds(model, x, y, eps=e, method="ibp") for e in (1.0, 5.0))
    assert torch.allclose(whole, bigger)


def test_plain_crown_agrees_with_crown_on_an_mlp_and_bounds_are_differentiable() -> None:
    model = _network("mlp")
    x, y = _inputs(model)
    with model.trainable() as module:
        chain = build_chain(model)
        region = InputRegion.around(x, "linf", 0.05, model.bounds)
        lower = crown_lower(chain, region, margin_spec(y, 10), intersect=False)
        lower.sum().backward()
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


def test_conv_unit_rows_match_the_transposed_convolution() -> None:
    torch.manual_seed(2)
    conv = Conv("c", weight=torch.randn(5, 3, 3, 2), bias=torch.randn(5), stride=(2, 1), padding=(1, 2),
                dilation=(2, 1))
    conv.in_shape = (3, 9, 7)
    conv.out_shape = tuple(conv.forward(torch.zeros(1, 3, 9, 7)).shape[1:])
    index = torch.randint(0, math.prod(conv.out_shape), (2, 6))
    weight = torch.randn(2, 6)
    fast = conv.unit_rows(index, weight)
    slow = super(Conv, conv).unit_rows(index, weight)
    assert torch.allclose(fast[0], slow[0], atol=1e-6) and torch.allclose(fast[1], slow[1], atol=1e-6)


def test_certificates_survive_pgd_on_a_trained_model(digits_model, digits_test) -> None:
    x, y = digits_test[0][:16], digits_test[1][:16]
    eps = 0.01
    certificates = certify_bounds(digits_model, x, y, eps=eps, method="crown-ibp")
    certified = torch.tensor([c.radius == eps for c in certificates])
    assert all(c.prediction == int(p) for c, p in zip(certificates, digits_model.predict(x), strict=True))
    assert int(certified.sum()) >= 4  # a trained CNN is certifiable at a small radius
    attacked = _pgd_points(digits_model, x, y, "linf", eps)
    assert bool((digits_model.predict(attacked)[certified] == y[certified]).all())
    assert all(not c.abstained for c in certificates)


def test_certified_radius_is_certified_and_within_range() -> None:
    model = _network("mlp")
    x, y = _inputs(model, 6)
    y_wrong = (y + 1) % 10
    certificates = certified_radius(model, x, y, max_eps=0.2, method="crown-ibp", steps=6)
    radii = torch.tensor([c.radius for c in certificates])
    assert bool(((radii >= 0) & (radii <= 0.2)).all()) and bool((radii > 0).any())
    for i, radius in enumerate(radii.tolist()):
        if radius > 0:
            again = certify_bounds(model, x[i : i + 1], y[i : i + 1], eps=radius, method="crown-ibp")[0]
            assert again.radius == radius
    curve = certified_accuracy(certificates, y, [0.0, 0.01, 0.05, 0.2])
    assert curve[0] == 1.0 and curve == sorted(curve, reverse=True)
    assert all(c.radius == 0.0 for c in certified_radius(model, x, y_wrong, max_eps=0.2, method="ibp", steps=2))


def test_certify_bounds_at_eps_zero_certifies_exactly_the_correct_points() -> None:
    model = _network("cnn-maxpool")
    x, y = _inputs(model, 6)
    y = y.clone()
    y[:2] = (y[:2] + 1) % 10
    certificates = certify_bounds(model, x, y, eps=0.0, method="ibp")
    assert [c.certifies(int(label), 0.0) for c, label in zip(certificates, y, strict=True)] == [False] * 2 + [True] * 4
    by_prediction = certify_bounds(model, x, eps=0.0, method="crown")
    assert all(c.certifies(c.prediction, 0.0) for c in by_prediction)


# --- errors that say what to fix -----------------------------------------------------------------------------


def test_unsupported_layer_is_named_with_its_position() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Tanh(), nn.Linear(10, 10))
    with pytest.raises(CapabilityError, match=r"layer 4 \(Tanh.*not supported by IBP/CROWN; supported: Linear"):
        build_chain(TorchClassifier(net, (1, 8, 8), 10))


def test_unsupported_function_in_a_traced_forward_is_named() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(torch.flatten(x, 1)))

    with pytest.raises(CapabilityError, match=r"layer 3 \(sigmoid\(\).*not supported"):
        build_chain(TorchClassifier(Net(), (1, 8, 8), 10))


def test_skip_connection_is_refused() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(10, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc(x)

    with pytest.raises(CapabilityError, match="plain chain"):
        build_chain(TorchClassifier(Residual(), (10,), 10))


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.BatchNorm1d(10)),
         r"layer 4 \(BatchNorm1d.*must directly follow a Linear.*follows ReLU"),
        (nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 10)), "follows the input"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(16, 10)), "ceil_mode"),
        (nn.Sequential(nn.Linear(8, 10)), r"Linear gets per-sample shape \(1, 8, 8\); put a Flatten before it"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), r"need \(num_classes,\) = \(10,\)"),
    ],
)
def test_unsupported_configurations_say_why(net: nn.Module, message: str) -> None:
    with pytest.raises(CapabilityError, match=message):
        build_chain(TorchClassifier(net, (1, 8, 8), 10))


def test_bad_arguments_raise_clear_errors() -> None:
    model = _network("mlp")
    x, y = _inputs(model)
    with pytest.raises(CapabilityError, match="white-box torch model"):
        margin_bounds(object(), x, y, eps=0.1)  # type: ignore[arg-type]
    for eps in (-0.1, math.inf, math.nan):
        with pytest.raises(InputError, match="eps must be a finite number >= 0"):
            margin_bounds(model, x, y, eps=eps)
    with pytest.raises(ConfigError, match="unknown norm 'l1'"):
        margin_bounds(model, x, y, eps=0.1, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown method 'deeppoly'"):
        certify_bounds(model, x, y, eps=0.1, method="deeppoly")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"the model expects \(N, 1, 8, 8\)"):
        margin_bounds(model, x.flatten(1), y, eps=0.1)
    with pytest.raises(InputError, match="outside the model's bounds"):
        margin_bounds(model, x + 2, y, eps=0.1)
    with pytest.raises(InputError, match=r"labels range over \[0, 10\]"):
        margin_bounds(model, x, torch.tensor([0, 1, 2, 10]), eps=0.1)
    with pytest.raises(InputError, match="int64"):
        margin_bounds(model, x, y.float(), eps=0.1)
    with pytest.raises(InputError, match="batch_size"):
        logit_bounds(model, x, eps=0.1, batch_size=0)
    with pytest.raises(InputError, match="steps"):
        certified_radius(model, x, y, max_eps=0.1, steps=-1)
