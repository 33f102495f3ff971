"""Differential privacy: DP-SGD through Opacus, its accountant's epsilon, and the empirical lower bound beside it.

The acceptance check: on the same 200 members and 200 non-members of the digits, LiRA finds members of a
deliberately overfit model at 1% false positives far more often than members of a DP-SGD model, and the
audit's lower bound on the DP model's epsilon stays below the accountant's epsilon.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.stats import binom
from torch import nn

from bastion.attacks.inference import (
    EpsilonBound,
    LiRA,
    MembershipResult,
    clopper_pearson_upper,
    epsilon_lower_bound,
    evaluate_membership,
    shadow_trainer,
)
from bastion.core.errors import CapabilityError, InputError
from bastion.data.sources import load_dataset
from bastion.defenses.training import DPTrainingRecord, TrainingRecord, default_delta, fit_private
from bastion.models.torch_adapter import TorchClassifier

pytest.importorskip("opacus")

MEMBERS = 200
#: DP-SGD recipe of the target and its shadows: about 90% train and 80% test accuracy, epsilon about 12 at 1e-3.
DP_RECIPE = {"noise_multiplier": 1.0, "epochs": 15, "lr": 2.0, "batch_size": 50}


def small_mlp() -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    net.input_shape, net.num_classes = (1, 8, 8), 10
    return net


def wide_mlp() -> nn.Module:
    """512 hidden units for 200 training digits: enough capacity to memorise them."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    net.input_shape, net.num_classes = (1, 8, 8), 10
    return net


def classifier(module: nn.Module | None = None) -> TorchClassifier:
    return TorchClassifier(module if module is not None else small_mlp(), (1, 8, 8), 10)


#: The records of the DP runs by seed (the target's is at 12345).
DP_RECORDS: dict[int, DPTrainingRecord] = {}


def train_private(x: np.ndarray, y: np.ndarray, seed: int) -> TorchClassifier:
    """The DP target's recipe, also the shadows' (a ShadowTrainer)."""
    torch.manual_seed(seed)
    model = classifier()
    DP_RECORDS[seed] = fit_private(model, x, y, seed=seed, **DP_RECIPE)
    return model


#: Trained to 100% train accuracy in 150 epochs of Adam, as in test_membership.
OVERFIT = shadow_trainer(wide_mlp, epochs=150, batch_size=100, lr=3e-3)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    torch.set_num_threads(1)
    data = load_dataset("digits:train")
    return data.x, data.y


@pytest.fixture(scope="module")
def population(digits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """400 digits and which 200 of them the targets train on."""
    x, y = digits
    rng = np.random.default_rng(0)
    index = rng.permutation(len(y))[: 2 * MEMBERS]
    is_member = np.zeros(2 * MEMBERS, dtype=bool)
    is_member[rng.permutation(2 * MEMBERS)[:MEMBERS]] = True
    return x[index], y[index], is_member


def _audit(recipe, population) -> tuple[TorchClassifier, MembershipResult]:
    torch.set_num_threads(1)
    x, y, is_member = population
    target = recipe(x[is_member], y[is_member], 12345)  # a seed no shadow gets
    lira = LiRA(shadows=8, seed=0).fit(x, y, recipe)
    return target, evaluate_membership(lira, target, x[is_member], y[is_member], x[~is_member], y[~is_member])


@pytest.fixture(scope="module")
def dp_audit(population) -> tuple[TorchClassifier, MembershipResult]:
    return _audit(train_private, population)


@pytest.fixture(scope="module")
def overfit_audit(population) -> tuple[TorchClassifier, MembershipResult]:
    return _audit(OVERFIT, population)


@pytest.fixture(scope="module")
def short_run(digits) -> tuple[TorchClassifier, DPTrainingRecord]:
    """Two epochs on 200 digits: enough to check the record and the module left behind."""
    x, y = digits
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = classifier()
    return model, fit_private(model, x[:MEMBERS], y[:MEMBERS], epochs=2, noise_multiplier=1.0, batch_size=50, lr=1.0)


# --- DP-SGD training ----------------------------------------------------------------------------------


def test_private_training_reports_the_accountants_epsilon(short_run):
    _, record = short_run
    privacy = record.privacy
    assert isinstance(record, TrainingRecord) and record.method == "dp-sgd"
    assert math.isfinite(privacy.epsilon) and privacy.epsilon > 0
    assert privacy.delta == 1e-3 == default_delta(MEMBERS)
    assert (privacy.accountant, privacy.noise_multiplier, privacy.max_grad_norm) == ("rdp", 1.0, 1.0)
    assert privacy.sample_rate == 0.25 and privacy.steps == 2 * 4 and len(record.history) == 2
    assert record.train_samples == MEMBERS and 0.0 <= record.train_accuracy <= 1.0
    assert DPTrainingRecord.model_validate_json(record.model_dump_json()) == record


def test_trained_module_is_plain_and_round_trips_through_safetensors(short_run, digits, tmp_path):
    model, _ = short_run
    module = model.module
    assert type(module) is nn.Sequential and not module.training
    for layer in module.modules():
        assert not layer._forward_hooks and not layer._backward_hooks and not layer._forward_pre_hooks
    for parameter in module.parameters():
        assert parameter.grad is None and not hasattr(parameter, "grad_sample")
    save_file(model.state_tensors(), tmp_path / "dp.safetensors")
    fresh = small_mlp()
    fresh.load_state_dict(load_file(tmp_path / "dp.safetensors"))
    x = torch.from_numpy(digits[0][:32])
    torch.testing.assert_close(classifier(fresh).logits(x), model.logits(x))


def test_more_noise_spends_less_epsilon(digits):
    x, y = digits
    torch.set_num_threads(1)
    epsilons = []
    for noise in (0.8, 1.5, 3.0):
        torch.manual_seed(0)
        record = fit_private(classifier(), x[:MEMBERS], y[:MEMBERS], epochs=1, noise_multiplier=noise, batch_size=50)
        epsilons.append(record.privacy.epsilon)
    assert epsilons[0] > epsilons[1] > epsilons[2] > 0


def test_target_epsilon_calibrates_the_noise(digits):
    x, y = digits
    torch.set_num_threads(1)
    torch.manual_seed(0)
    record = fit_private(classifier(), x[:MEMBERS], y[:MEMBERS], epochs=2, target_epsilon=2.0, batch_size=50)
    assert record.privacy.target_epsilon == 2.0
    assert 1.8 <= record.privacy.epsilon <= 2.0 + 1e-6
    assert record.privacy.noise_multiplier > 1.0


def test_prv_accountant_is_tighter_than_rdp(digits):
    x, y = digits
    torch.set_num_threads(1)
    epsilons = {}
    for accountant in ("rdp", "prv"):
        torch.manual_seed(0)
        record = fit_private(classifier(), x[:MEMBERS], y[:MEMBERS], epochs=1, noise_multiplier=1.0, batch_size=50,
                             accountant=accountant)
        epsilons[accountant] = record.privacy.epsilon
    assert 0 < epsilons["prv"] < epsilons["rdp"]


def test_same_seed_same_weights(digits):
    x, y = digits
    torch.set_num_threads(1)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = classifier()
        fit_private(model, x[:100], y[:100], epochs=1, noise_multiplier=1.0, batch_size=25, seed=7)
        states.append(model.state_tensors())
    for name, tensor in states[0].items():
        torch.testing.assert_close(tensor, states[1][name], rtol=0, atol=0)


@pytest.mark.parametrize(("options", "message"), [
    ({"noise_multiplier": 1.0, "target_epsilon": 3.0}, "exactly one of noise_multiplier"),
    ({}, "exactly one of noise_multiplier"),
    ({"noise_multiplier": -1.0}, "noise_multiplier must be"),
    ({"target_epsilon": 0.0}, "target_epsilon must be"),
    ({"noise_multiplier": 1.0, "max_grad_norm": -1.0}, "max_grad_norm must be"),
    ({"noise_multiplier": 1.0, "max_grad_norm": float("inf")}, "max_grad_norm must be"),
    ({"noise_multiplier": 1.0, "delta": 0.0}, "delta must be in"),
    ({"noise_multiplier": 1.0, "delta": 1.0}, "delta must be in"),
    ({"noise_multiplier": 1.0, "accountant": "gdp"}, "accountant must be"),
    ({"noise_multiplier": 1.0, "epochs": 0}, "epochs must be"),
])
def test_bad_settings_are_refused(digits, options, message):
    x, y = digits
    with pytest.raises(InputError, match=message):
        fit_private(classifier(), x[:50], y[:50], **({"epochs": 1} | options))


def test_batch_norm_is_rejected_with_a_fix(digits):
    x, y = digits
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    model = classifier(net)
    before = {name: t.clone() for name, t in model.state_tensors().items()}
    with pytest.raises(InputError, match="BatchNorm.*GroupNorm"):
        fit_private(model, x[:50], y[:50], epochs=1, noise_multiplier=1.0)
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    for name, tensor in model.state_tensors().items():
        torch.testing.assert_close(tensor, before[name])


def test_missing_opacus_says_how_to_install(digits, monkeypatch):
    x, y = digits
    monkeypatch.setitem(sys.modules, "opacus", None)  # makes `import opacus` raise ImportError
    with pytest.raises(CapabilityError, match=r"bastion\[privacy\]"):
        fit_private(classifier(), x[:50], y[:50], epochs=1, noise_multiplier=1.0)


def test_default_delta_is_one_over_n_rounded_down_to_a_power_of_ten():
    assert [default_delta(n) for n in (5, 10, 11, 200, 1000, 1001, 60000)] == [0.1, 0.1, 0.01, 1e-3, 1e-3, 1e-4, 1e-5]
    with pytest.raises(InputError):
        default_delta(0)


# --- the acceptance check: LiRA on a DP model and on an overfit one -------------------------------------


def test_lira_finds_far_more_members_of_an_overfit_model_than_of_a_dp_model(dp_audit, overfit_audit):
    _, dp = dp_audit
    _, overfit = overfit_audit
    # Measured: 0.205 for the overfit model, 0.01 (chance) for the DP one.
    assert overfit.tpr_at_1pct >= 0.12
    assert overfit.tpr_at_1pct >= 4 * max(dp.tpr_at_1pct, 0.01)
    assert dp.auc < 0.6 < overfit.auc


def test_empirical_epsilon_of_the_dp_model_stays_below_the_accountants(dp_audit, overfit_audit):
    _, dp = dp_audit
    _, overfit = overfit_audit
    accountant = DP_RECORDS[12345].privacy
    dp_bound = epsilon_lower_bound(dp.scores, dp.is_member, delta=accountant.delta)
    overfit_bound = epsilon_lower_bound(overfit.scores, overfit.is_member, delta=accountant.delta)
    assert math.isfinite(accountant.epsilon) and dp_bound.epsilon <= accountant.epsilon
    # The audit does see the overfit model leak (measured about 1.0, against 0 for the DP model).
    assert overfit_bound.epsilon > dp_bound.epsilon
    assert overfit_bound.epsilon > 0.5


# --- the empirical lower bound, by hand ----------------------------------------------------------------

SEPARATED = np.array([1.0] * 10 + [0.0] * 10)
TRUTH = np.array([True] * 10 + [False] * 10)


def test_clopper_pearson_upper_bounds_match_their_closed_forms_and_definition():
    level = 0.025
    # k = 0: 1 - level^(1/n); k = n - 1: (1 - level)^(1/n) (Beta(n, 1) has CDF x^n); k = n: 1.
    np.testing.assert_allclose(clopper_pearson_upper([0, 9, 10], 10, level),
                               [1 - level ** 0.1, (1 - level) ** 0.1, 1.0])
    # The bound is the p at which seeing k or fewer successes has probability level.
    upper = clopper_pearson_upper(3, 20, level)[0]
    assert binom.cdf(3, 20, upper) == pytest.approx(level)


def test_perfect_separation_at_a_fixed_threshold():
    bound = epsilon_lower_bound(SEPARATED, TRUTH, delta=0.0, threshold=0.5)
    upper = 1 - 0.025 ** 0.1  # FP = FN = 0 of 10, one-sided at (1 - 0.95) / 2
    assert isinstance(bound, EpsilonBound)
    assert bound.epsilon == pytest.approx(math.log((1 - upper) / upper))  # 0.807
    assert (bound.false_positives, bound.false_negatives, bound.fpr, bound.fnr) == (0, 0, 0.0, 0.0)
    assert bound.fpr_upper == pytest.approx(upper) and bound.thresholds_tried == 1
    with_delta = epsilon_lower_bound(SEPARATED, TRUTH, delta=0.1, threshold=0.5)
    assert with_delta.epsilon == pytest.approx(math.log((1 - 0.1 - upper) / upper))


def test_asymmetric_errors_use_the_better_of_the_two_inequalities():
    # Threshold 0.5: 2 of 10 non-members flagged, no member missed.
    scores = np.array([1.0] * 10 + [1.0] * 2 + [0.0] * 8)
    bound = epsilon_lower_bound(scores, TRUTH, delta=0.0, threshold=0.5)
    fpr_up, fnr_up = clopper_pearson_upper(2, 10, 0.025)[0], 1 - 0.025 ** 0.1
    expected = max(math.log((1 - fpr_up) / fnr_up), math.log((1 - fnr_up) / fpr_up))
    assert bound.epsilon == pytest.approx(expected)
    assert (bound.false_positives, bound.false_negatives) == (2, 0)


def test_searching_thresholds_pays_a_bonferroni_price():
    searched = epsilon_lower_bound(SEPARATED, TRUTH, delta=0.0)
    upper = 1 - (0.05 / 4) ** 0.1  # two distinct scores tried: level 0.05 / (2 * 2)
    assert searched.thresholds_tried == 2 and searched.threshold == 1.0
    assert searched.epsilon == pytest.approx(math.log((1 - upper) / upper))
    assert searched.epsilon < epsilon_lower_bound(SEPARATED, TRUTH, delta=0.0, threshold=0.5).epsilon


def test_bound_grows_with_evidence_and_shrinks_with_confidence_and_delta():
    def separated(n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.r_[np.ones(n), np.zeros(n)], np.r_[np.ones(n, bool), np.zeros(n, bool)]

    by_size = [epsilon_lower_bound(*separated(n), delta=1e-5).epsilon for n in (10, 100, 1000)]
    assert 0 < by_size[0] < by_size[1] < by_size[2]
    scores, truth = separated(100)
    by_confidence = [epsilon_lower_bound(scores, truth, delta=1e-5, confidence=c).epsilon for c in (0.5, 0.9, 0.99)]
    assert by_confidence[0] > by_confidence[1] > by_confidence[2] > 0
    by_delta = [epsilon_lower_bound(scores, truth, delta=d).epsilon for d in (0.0, 0.1, 0.5)]
    assert by_delta[0] > by_delta[1] > by_delta[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scores_prove_nothing(seed):
    rng = np.random.default_rng(seed)
    truth = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    assert epsilon_lower_bound(rng.random(1000), truth, delta=1e-5).epsilon < 0.05


def test_scores_in_the_wrong_direction_prove_nothing():
    assert epsilon_lower_bound(-SEPARATED, TRUTH, delta=0.0).epsilon == 0.0


@pytest.mark.parametrize(("options", "message"), [
    ({"delta": -0.1}, "delta must be"),
    ({"delta": 1.0}, "delta must be"),
    ({"delta": 0.0, "confidence": 1.0}, "confidence must be"),
    ({"delta": 0.0, "confidence": 0.0}, "confidence must be"),
    ({"delta": 0.0, "threshold": float("nan")}, "threshold must be"),
])
def test_bound_refuses_bad_settings(options, message):
    with pytest.raises(InputError, match=message):
        epsilon_lower_bound(SEPARATED, TRUTH, **options)


def test_bound_refuses_a_truth_without_non_members():
    with pytest.raises(InputError, match="both members and non-members"):
        epsilon_lower_bound(SEPARATED, np.ones(20, bool), delta=0.0)


def test_bastion_train_with_dp_writes_the_accountants_record(tmp_path):
    from typer.testing import CliRunner

    from bastion.cli.main import app

    runner = CliRunner()
    out = tmp_path / "dp.safetensors"
    args = ["train", "--model", "bastion.models.zoo:digits_cnn", "--data", "digits:train", "--limit", "300",
            "--epochs", "1", "--out", str(out)]
    result = runner.invoke(app, [*args, "--dp-noise", "1.0"])
    assert result.exit_code == 0, result.output
    record = DPTrainingRecord.model_validate_json(out.with_suffix(".privacy.json").read_text())
    assert record.privacy.noise_multiplier == 1.0 and 0 < record.privacy.epsilon < float("inf")
    assert "epsilon" in result.output and out.exists()
    refused = runner.invoke(app, [*args, "--dp-noise", "1.0", "--adversarial-eps", "0.1"])
    assert refused.exit_code != 0 and "cannot be combined" in refused.output
    plain = runner.invoke(app, args)  # plain weights over the DP ones: their accountant's record goes
    assert plain.exit_code == 0, plain.output
    assert not out.with_suffix(".privacy.json").exists()
