"""Randomized smoothing (Cohen et al. 2019): PREDICT, CERTIFY, the sequential mode, noise training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from bastion.certify.base import Certificate
from bastion.certify.sequential import certify_sequential, checkpoint_schedule
from bastion.certify.smoothing import GaussianSmoothing, clopper_pearson_lower, clopper_pearson_upper
from bastion.core.errors import InputError
from bastion.defenses.training.noise import GaussianAugmentation, sample_noise
from bastion.defenses.training.objective import Objective


class RuleClassifier:
    """A label-only classifier ``predict(x) = rule(x)`` that records every batch it is given."""

    bounds = (0.0, 1.0)
    access = "labels"
    kind = "fake"

    def __init__(self, rule, num_classes: int = 3, input_shape: tuple[int, ...] = (4,)) -> None:
        self.rule = rule
        self.num_classes = num_classes
        self.input_shape = input_shape
        self.batch_sizes: list[int] = []
        self.first_batch: torch.Tensor | None = None

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(x))
        if self.first_batch is None:
            self.first_batch = x.clone()
        return self.rule(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(self.predict(x), self.num_classes).float()


def constant(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(x), dtype=torch.int64)


def coin(x: torch.Tensor) -> torch.Tensor:
    """Class 0 or 1 by the sign of the first coordinate: a fair coin under noise around 0."""
    return (x.reshape(len(x), -1)[:, 0] > 0).to(torch.int64)


def bernoulli(p: float, sigma: float):
    """Class 0 with probability ``p`` for inputs at 0 (the first coordinate's noise below a quantile)."""
    cut = float(norm.ppf(p))
    return lambda x: (x[:, 0] / sigma >= cut).to(torch.int64)


# ------------------------------------------------------------------------------- CERTIFY / PREDICT


def test_constant_model_certifies_the_exact_clopper_pearson_radius():
    sigma, n, alpha = 0.5, 1000, 0.001
    smoothed = GaussianSmoothing(RuleClassifier(constant), sigma, batch_size=128)
    certificates = smoothed.certify(torch.zeros(3, 4), n0=10, n=n, alpha=alpha)
    expected = sigma * norm.ppf(alpha ** (1 / n))
    for certificate in certificates:
        assert isinstance(certificate, Certificate)
        assert certificate.prediction == 0 and not certificate.abstained
        assert certificate.radius == pytest.approx(expected, abs=1e-6)
        assert certificate.p_lower == pytest.approx(alpha ** (1 / n), abs=1e-12)
        assert certificate.top_count == n and certificate.forward_passes == 10 + n


def test_constant_model_predicts_its_class():
    smoothed = GaussianSmoothing(RuleClassifier(constant), 0.25)
    assert smoothed.predict(torch.rand(4, 4), n=20, alpha=0.001).tolist() == [0, 0, 0, 0]


def test_tied_classes_abstain():
    smoothed = GaussianSmoothing(RuleClassifier(coin), 0.25, batch_size=256)
    x = torch.zeros(5, 4)
    assert smoothed.predict(x, n=1000, alpha=0.001).tolist() == [-1] * 5
    for certificate in smoothed.certify(x, n0=50, n=1000, alpha=0.001):
        assert certificate.abstained and certificate.prediction == -1 and certificate.radius == 0.0
        assert 420 < certificate.top_count < 580, "the coin is fair: about half the votes"
        assert certificate.p_lower <= 0.5


def test_noise_has_sigma_and_is_not_clipped_to_the_bounds():
    model = RuleClassifier(constant, input_shape=(1, 20, 20))
    GaussianSmoothing(model, 0.3, batch_size=64).certify(torch.ones(1, 1, 20, 20), n0=64, n=1)
    noise = model.first_batch - 1.0
    assert float(noise.std()) == pytest.approx(0.3, rel=0.02)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(model.first_batch.max()) > 1.5, "inputs at the upper bound are not clipped back"


def test_false_certificates_are_rare_for_fixed_and_sequential():
    """pA = 0.78 < Phi(r / sigma) = 0.8: a certificate at r is wrong; each should be wrong <= alpha of the time."""
    sigma, alpha, count = 0.5, 0.1, 400
    radius = sigma * float(norm.ppf(0.8))
    smoothed = GaussianSmoothing(RuleClassifier(bernoulli(0.78, sigma), num_classes=2), sigma, batch_size=4096)
    x, keys = torch.zeros(count, 4), torch.arange(count)
    fixed = smoothed.certify(x, n0=10, n=300, alpha=alpha, keys=keys)
    sequential = certify_sequential(smoothed, x, [radius], n0=10, n=300, alpha=alpha, keys=keys)
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / count)
    assert sum(c.certifies(0, radius) for c in fixed) / count <= bound
    assert sum(c.certifies(0, radius) for c in sequential) / count <= bound
    assert sum(c.certifies(0, 0.0) for c in fixed) > 0.9 * count, "the class itself is found"


def test_clopper_pearson_bounds():
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** 0.1)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0
    assert clopper_pearson_upper(0, 10, 0.05) == pytest.approx(1 - 0.05 ** 0.1)
    assert clopper_pearson_lower(60, 100, 0.01) < 0.6 < clopper_pearson_upper(60, 100, 0.01)


# --------------------------------------------------------------------------- noise and memory


def test_same_seed_same_certificates_whatever_the_batch_size(digits_model, digits_test):
    x = digits_test[0][:4]
    keys = torch.arange(4)
    runs = [GaussianSmoothing(digits_model, 0.3, batch_size=size, seed=3).certify(x, n0=20, n=300, keys=keys)
            for size in (1000, 7, 64)]
    assert runs[0] == runs[1] == runs[2]
    alone = GaussianSmoothing(digits_model, 0.3, batch_size=7, seed=3).certify(x[2:], n0=20, n=300, keys=keys[2:])
    assert alone == runs[0][2:], "an input's noise does not depend on the others in its batch"
    other_seed = GaussianSmoothing(digits_model, 0.3, batch_size=64, seed=4).certify(x, n0=20, n=300, keys=keys)
    assert [c.top_count for c in other_seed] != [c.top_count for c in runs[0]]


def test_batches_never_exceed_batch_size_and_are_shared_between_inputs():
    model = RuleClassifier(constant)
    GaussianSmoothing(model, 0.25, batch_size=64).certify(torch.zeros(3, 4), n0=10, n=5000)
    assert max(model.batch_sizes) == 64
    assert sum(model.batch_sizes) == 3 * (10 + 5000)
    # the 30 selection draws share one batch; 15,000 estimation draws fill 235 batches of at most 64
    assert model.batch_sizes[0] == 30 and len(model.batch_sizes) == 1 + math.ceil(15000 / 64)


def test_channels_last_layout_is_restored(digits_model, digits_test):
    GaussianSmoothing(digits_model, 0.25, batch_size=50).certify(digits_test[0][:2], n0=10, n=50)
    assert all(p.is_contiguous() and not p.is_inference() for p in digits_model.module.parameters())
    with torch.inference_mode():  # a caller's inference mode: the weights are left as they are
        GaussianSmoothing(digits_model, 0.25, batch_size=50).certify(digits_test[0][:2], n0=10, n=50)
    assert all(p.is_contiguous() and not p.is_inference() for p in digits_model.module.parameters())


# ------------------------------------------------------------------------------------ sequential


def test_sequential_decides_early_on_an_easy_model():
    sigma, radii, n, n0 = 0.5, [0.0, 0.5, 1.0], 100_000, 100
    smoothed = GaussianSmoothing(RuleClassifier(constant), sigma, batch_size=1000)
    for certificate in certify_sequential(smoothed, torch.zeros(2, 4), radii, n0=n0, n=n, alpha=0.001):
        assert certificate.certified == (True, True, True) and certificate.stopped_early
        assert certificate.forward_passes < (n0 + n) / 50
        assert all(certificate.certifies(0, r) for r in radii)


def test_sequential_agrees_with_fixed_n_on_a_real_model(digits_model, digits_test):
    x, y = digits_test[0][:20], digits_test[1][:20]
    sigma, radii, n = 0.1, [0.0, 0.05, 0.1, 0.2], 1000
    smoothed = GaussianSmoothing(digits_model, sigma, batch_size=500, seed=1)
    fixed = smoothed.certify(x, n0=50, n=n, alpha=0.001)
    sequential = certify_sequential(smoothed, x, radii, n0=50, n=n, alpha=0.001)
    for label, f, s in zip(y.tolist(), fixed, sequential, strict=True):
        assert [f.certifies(label, r) for r in radii] == [s.certifies(label, r) for r in radii]
        assert s.certified == tuple(not s.abstained and s.radius >= r for r in radii)
    assert sum(s.forward_passes for s in sequential) < 0.7 * sum(f.forward_passes for f in fixed)
    assert any(s.certifies(label, 0.1) for label, s in zip(y.tolist(), sequential, strict=True))


def test_checkpoint_schedule_spends_at_most_alpha():
    sigma, radii, n, alpha = 0.25, [0.0, 0.25, 0.5, 0.75], 10_000, 0.001
    schedule = checkpoint_schedule(n, sigma=sigma, radii=radii, alpha=alpha)
    assert sum(schedule.alphas) == pytest.approx(alpha) and sum(schedule.alphas) <= alpha * (1 + 1e-12)
    assert list(schedule.draws) == sorted(set(schedule.draws)) and schedule.draws[-1] == n
    draws = np.asarray(schedule.draws)
    for r in radii:  # an input with every vote for its class certifies r at a checkpoint before the cap
        lower = clopper_pearson_lower(draws, draws, np.asarray(schedule.alphas))
        assert (sigma * norm.ppf(lower[:-1]) >= r).any()


# ------------------------------------------------------------------------------ noise training


def test_gaussian_augmentation_is_cross_entropy_on_keyed_noise(digits_model, digits_test):
    x, y = digits_test[0][:16], digits_test[1][:16]
    objective = GaussianAugmentation(sigma=0.3)
    assert isinstance(objective, Objective) and objective.params() == {"sigma": 0.3}
    keys = torch.arange(100, 116)
    with digits_model.trainable() as module:
        loss = objective.loss(digits_model, module, x, y, progress=0.0, seed=5, keys=keys)
        loss.backward()
        assert all(p.grad is not None for p in module.parameters())
        module.zero_grad()
        expected = F.cross_entropy(module(x + 0.3 * sample_noise(keys, 5, x)), y)
        again = objective.loss(digits_model, module, x, y, progress=0.5, seed=5, keys=keys)
        other = objective.loss(digits_model, module, x, y, progress=0.0, seed=6, keys=keys)
        module.eval()
    loss, expected, again, other = (float(v.detach()) for v in (loss, expected, again, other))
    assert loss == pytest.approx(expected) and again == pytest.approx(loss)
    assert other != pytest.approx(loss)
    assert torch.equal(sample_noise(keys[3:5], 5, x[3:5]), sample_noise(keys, 5, x)[3:5])


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: GaussianSmoothing(m, 0.0), "sigma must be a finite number > 0"),
        (lambda m: GaussianSmoothing(m, float("nan")), "sigma must be a finite number > 0"),
        (lambda m: GaussianSmoothing(m, 0.25, batch_size=0), "batch_size must be an integer >= 1"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 4), n=0), "n must be an integer >= 1"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 4), n0=0), "n0 must be an integer >= 1"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 4), alpha=1.0), "alpha must be a number"),
        (lambda m: GaussianSmoothing(m, 0.25).predict(torch.zeros(2, 4), alpha=0.0), "alpha must be a number"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 5)), r"shape \(N, 4\), got \(2, 5\)"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 4, dtype=torch.int64)), "floating point"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.full((2, 4), float("nan"))), "NaN"),
        (lambda m: GaussianSmoothing(m, 0.25).certify(torch.zeros(2, 4), keys=torch.arange(3)), r"shape \(2,\)"),
        (lambda m: certify_sequential(GaussianSmoothing(m, 0.25), torch.zeros(2, 4), [-0.1]), "radii must be"),
        (lambda m: certify_sequential(GaussianSmoothing(m, 0.25), torch.zeros(2, 4), []), "radii must be"),
        (lambda m: certify_sequential(GaussianSmoothing(m, 0.25), torch.zeros(2, 4), ["a"]), "radii must be"),
        (lambda m: certify_sequential(GaussianSmoothing(m, 0.25), torch.zeros(2, 4), [0.1], growth=1.0), "growth"),
        (lambda m: GaussianAugmentation(sigma=-1.0), "sigma must be a finite number > 0"),
    ],
)
def test_bad_input_says_what_to_fix(build, message):
    with pytest.raises(InputError, match=message):
        build(RuleClassifier(constant))


def test_a_model_returning_bad_labels_is_refused():
    broken = RuleClassifier(lambda x: torch.full((len(x),), 7, dtype=torch.int64))
    with pytest.raises(InputError, match=r"labels outside 0\.\.2"):
        GaussianSmoothing(broken, 0.25).certify(torch.zeros(1, 4), n0=5, n=5)
