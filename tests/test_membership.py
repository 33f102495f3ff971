"""Membership inference: the ROC metrics by hand, LiRA and the loss attack on an overfit and a regular model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bastion.attacks.inference import (
    LiRA,
    LossThreshold,
    MembershipResult,
    evaluate_membership,
    logit_confidence,
    membership_result,
    roc_auc,
    roc_points,
    shadow_membership,
    shadow_trainer,
    thin_curve,
    tpr_at_fpr,
)
from bastion.core.errors import CapabilityError, InputError
from bastion.data.sources import load_dataset
from bastion.models.torch_adapter import TorchClassifier

MEMBERS = 200


def wide_mlp() -> nn.Module:
    """512 hidden units for 200 training digits: enough capacity to memorise them."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    net.input_shape, net.num_classes = (1, 8, 8), 10
    return net


def dropout_mlp() -> nn.Module:
    """128 hidden units with dropout on the input (0.2) and the hidden layer (0.5)."""
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(128, 10))
    net.input_shape, net.num_classes = (1, 8, 8), 10
    return net


#: Overfit: trained to 100% train accuracy for 150 epochs (about 95% test). Regular: dropout and
#: stopped after 20 epochs (about 92% train, 84% test). Shadows copy the target's recipe.
OVERFIT = shadow_trainer(wide_mlp, epochs=150, batch_size=100, lr=3e-3)
REGULAR = shadow_trainer(dropout_mlp, epochs=20, batch_size=100, lr=3e-3)


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """400 digits from ``digits:train`` and which 200 of them the targets train on."""
    torch.set_num_threads(1)
    data = load_dataset("digits:train")
    rng = np.random.default_rng(0)
    index = rng.permutation(len(data.y))[: 2 * MEMBERS]
    is_member = np.zeros(2 * MEMBERS, dtype=bool)
    is_member[rng.permutation(2 * MEMBERS)[:MEMBERS]] = True
    return data.x[index], data.y[index], is_member


def _attack(recipe, population) -> tuple[TorchClassifier, LiRA]:
    x, y, is_member = population
    target = recipe(x[is_member], y[is_member], 12345)  # a seed no shadow gets
    return target, LiRA(shadows=8, seed=0).fit(x, y, recipe)


@pytest.fixture(scope="module")
def overfit(population) -> tuple[TorchClassifier, LiRA]:
    return _attack(OVERFIT, population)


@pytest.fixture(scope="module")
def regular(population) -> tuple[TorchClassifier, LiRA]:
    return _attack(REGULAR, population)


def _evaluate(attack, target, population) -> MembershipResult:
    x, y, is_member = population
    return evaluate_membership(attack, target, x[is_member], y[is_member], x[~is_member], y[~is_member])


class LabelsOnly:
    """A classifier that shows only its top label (one-hot scores)."""

    access = "labels"
    kind = "test"

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.num_classes = model, model.num_classes
        self.input_shape, self.bounds = model.input_shape, model.bounds

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.model.predict(x), self.num_classes).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(x)


# --- metrics, by hand -------------------------------------------------------------------------------

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TRUTH = np.array([True, True, False, True, False, False])


def test_roc_auc_counts_the_member_non_member_pairs_ranked_right():
    # Members 0.9, 0.8, 0.6 against non-members 0.7, 0.5, 0.4: 3 + 3 + 2 of 9 pairs are ordered.
    assert roc_auc(SCORES, TRUTH) == pytest.approx(8 / 9)
    assert roc_auc(-SCORES, TRUTH) == pytest.approx(1 / 9)
    assert roc_auc(np.ones(6), TRUTH) == pytest.approx(0.5)  # one tie for all: half credit


def test_roc_points_keep_every_threshold():
    fpr, tpr, thresholds = roc_points(SCORES, TRUTH)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert np.isinf(thresholds[0]) and len(thresholds) == 7


@pytest.mark.parametrize(("fpr", "expected"), [
    (0.0, 2 / 3), (0.01, 2 / 3), (0.33, 2 / 3), (1 / 3, 1.0), (0.5, 1.0), (1.0, 1.0),
])
def test_tpr_at_fpr_is_the_best_tpr_of_a_threshold_within_the_fpr(fpr, expected):
    assert tpr_at_fpr(SCORES, TRUTH, fpr) == pytest.approx(expected)


def test_tpr_at_fpr_does_not_interpolate_inside_a_tie():
    # All scores tied: the only thresholds give (0, 0) and (1, 1); a line would say 0.5 at FPR 0.5.
    assert tpr_at_fpr(np.zeros(4), [True, False, True, False], 0.5) == 0.0


def test_membership_result_summarises_and_serialises():
    result = membership_result(SCORES, TRUTH.astype(int), attack="test", params={"k": 1})
    assert result.auc == pytest.approx(8 / 9)
    assert result.tpr_at_1pct == result.tpr_at_01pct == pytest.approx(2 / 3)
    assert (result.members, result.non_members) == (3, 3)
    assert result.is_member == TRUTH.tolist() and result.scores == SCORES.tolist()
    assert MembershipResult.model_validate_json(result.model_dump_json()) == result


def test_thin_curve_keeps_the_low_fpr_end_whole_and_the_last_point():
    fpr = np.concatenate([[0.0], np.sort(np.random.default_rng(0).random(2000)), [1.0]])
    tpr = np.sqrt(fpr)
    thin_fpr, thin_tpr = thin_curve(fpr, tpr, 500)
    assert len(thin_fpr) <= 500
    np.testing.assert_array_equal(thin_fpr[:250], fpr[:250])
    assert (thin_fpr[-1], thin_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thin_fpr) >= 0)
    short = thin_curve(fpr[:10], tpr[:10], 500)
    np.testing.assert_array_equal(short[0], fpr[:10])


@pytest.mark.parametrize("fpr", [-0.01, 1.5, float("nan"), True, "1%"])
def test_an_fpr_outside_zero_to_one_is_refused(fpr):
    with pytest.raises(InputError, match="fpr must be a false-positive rate in \\[0, 1\\]"):
        tpr_at_fpr(SCORES, TRUTH, fpr)


@pytest.mark.parametrize(("scores", "truth", "message"), [
    (SCORES, TRUTH[:5], "scores has 6 entries but is_member has 5"),
    (SCORES[:, None], TRUTH, "must be 1-D"),
    (SCORES, np.ones(6, dtype=bool), "both members and non-members"),
    (np.array([0.1, np.nan, 0.3, 0.4, 0.5, 0.6]), TRUTH, "must be finite"),
    (SCORES, np.array([0, 1, 2, 0, 1, 0]), "is_member must be booleans"),
])
def test_metrics_refuse_bad_scores_with_a_reason(scores, truth, message):
    with pytest.raises(InputError, match=message):
        roc_auc(scores, truth)


def test_logit_confidence_is_the_log_odds_and_stays_finite_when_p_rounds_to_one():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [100.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2, 0])
    p = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    phi = logit_confidence(logits, y)
    np.testing.assert_allclose(phi[:2], torch.log(p / (1 - p))[:2], rtol=1e-12)
    assert phi[2] == pytest.approx(100 - np.log(2))  # p = 1 - 2e-44 in float64: log(1 - p) is -inf
    torch.testing.assert_close(logit_confidence(logits + 7.0, y), phi)


# --- shadows -----------------------------------------------------------------------------------------


def test_every_example_is_in_for_half_of_the_shadows_and_the_split_is_seeded():
    mask = shadow_membership(1000, 8, seed=3)
    assert mask.shape == (8, 1000) and np.all(mask.sum(axis=0) == 4)
    assert np.all(np.abs(mask.sum(axis=1) - 500) < 80)
    np.testing.assert_array_equal(mask, shadow_membership(1000, 8, seed=3))
    assert not np.array_equal(mask, shadow_membership(1000, 8, seed=4))


def test_lira_trains_each_shadow_on_its_half_with_a_seed_of_its_own(population):
    x, y, _ = population
    calls: list[tuple[np.ndarray, np.ndarray, int]] = []
    untrained = TorchClassifier(wide_mlp(), (1, 8, 8), 10)

    def record(x_shadow: np.ndarray, y_shadow: np.ndarray, seed: int) -> TorchClassifier:
        calls.append((x_shadow, y_shadow, seed))
        return untrained

    lira = LiRA(shadows=4, seed=7).fit(torch.from_numpy(x[:40]), torch.from_numpy(y[:40]), record)
    assert len(calls) == 4 and len({seed for _, _, seed in calls}) == 4
    for (x_shadow, y_shadow, _), chosen in zip(calls, lira.in_mask_, strict=True):
        assert x_shadow.dtype == np.float32 and y_shadow.dtype == np.int64
        np.testing.assert_array_equal(x_shadow, x[:40][chosen])
        np.testing.assert_array_equal(y_shadow, y[:40][chosen])


def test_lira_is_deterministic_given_its_seed(population):
    x, y, is_member = population
    quick = shadow_trainer(wide_mlp, epochs=2, batch_size=100)
    target = quick(x[:60][is_member[:60]], y[:60][is_member[:60]], 99)
    first = LiRA(shadows=2, seed=5).fit(x[:60], y[:60], quick).score(target, x[:60], y[:60])
    second = LiRA(shadows=2, seed=5).fit(x[:60], y[:60], quick).score(target, x[:60], y[:60])
    np.testing.assert_array_equal(first, second)
    assert first.shape == (60,) and first.dtype == np.float64


# --- the attacks on trained models --------------------------------------------------------------------


def test_lira_exposes_members_of_an_overfit_model_far_more_than_of_a_regular_one(population, overfit, regular):
    overfit_result = _evaluate(overfit[1], overfit[0], population)
    regular_result = _evaluate(regular[1], regular[0], population)
    # Measured: overfit AUC 0.74, TPR 0.205 at 1% FPR, 0.08 at 0.1%; regular 0.59, 0.02 and 0.
    assert overfit_result.auc > 0.68 and overfit_result.tpr_at_1pct > 0.12
    assert overfit_result.auc > regular_result.auc + 0.08
    assert overfit_result.tpr_at_1pct > 4 * regular_result.tpr_at_1pct
    assert overfit_result.tpr_at_01pct > regular_result.tpr_at_01pct
    assert overfit_result.attack == "lira" and overfit_result.params["shadows"] == 8
    assert not overfit_result.params["per_example_variance"]  # 8 shadows: a global variance


def test_lira_finds_confident_members_that_the_loss_threshold_misses(population, overfit):
    target, lira = overfit
    lira_result = _evaluate(lira, target, population)
    loss_result = _evaluate(LossThreshold(), target, population)
    assert loss_result.auc > 0.55  # measured 0.63: the loss leaks on average...
    assert lira_result.tpr_at_1pct > loss_result.tpr_at_1pct + 0.1  # ...but only LiRA is sure of some


def test_offline_and_per_example_lira_leak_too(population, overfit):
    target, lira = overfit
    offline = copy.copy(lira)
    offline.online = False  # the shadows and their split stay: only the test changes
    per_example = copy.copy(lira)
    per_example.variance = "per-example"
    assert _evaluate(offline, target, population).auc > 0.6
    assert _evaluate(per_example, target, population).auc > 0.6


def test_loss_attack_calibrated_per_class_beats_guessing_on_the_overfit_model(population, overfit):
    target = overfit[0]
    x, y, _ = population
    reference = load_dataset("digits:test")  # no member of the target: a sample of the population
    attack = LossThreshold(per_class=True).fit(target, reference.x, reference.y)
    assert attack.class_mean_.shape == (10,)
    assert _evaluate(attack, target, population).auc > 0.55


def test_online_lira_refuses_examples_outside_its_population_and_offline_scores_them(population, overfit):
    target, lira = overfit
    outside = load_dataset("digits:test")
    with pytest.raises(InputError, match="not in the population"):
        lira.score(target, outside.x[:5], outside.y[:5])
    offline = copy.copy(lira)
    offline.online = False
    assert np.isfinite(offline.score(target, outside.x[:5], outside.y[:5])).all()


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shadows": 1}, "at least 2 shadow models"),
    ({"shadows": 0}, "shadows must be a positive integer"),
    ({"shadows": 2, "variance": "per-example"}, "at least 4 shadows"),
    ({"variance": "median"}, "variance must be"),
])
def test_lira_settings_are_checked(kwargs, message):
    with pytest.raises(InputError, match=message):
        LiRA(**kwargs)


def test_lira_refuses_a_bad_population_and_scoring_before_fit(population, overfit):
    x, y, _ = population
    with pytest.raises(InputError, match="same length"):
        LiRA(shadows=2).fit(x[:10], y[:9], OVERFIT)
    with pytest.raises(InputError, match="must be fitted first"):
        LiRA(shadows=2).score(overfit[0], x[:3], y[:3])


def test_scoring_checks_shapes_lengths_and_access(population, overfit):
    target, lira = overfit
    x, y, _ = population
    with pytest.raises(InputError, match="same length"):
        lira.score(target, x[:5], y[:4])
    with pytest.raises(InputError, match=r"per-sample shape \(64,\); the model expects \(1, 8, 8\)"):
        LossThreshold().score(target, x[:5].reshape(5, 64), y[:5])
    with pytest.raises(InputError, match="labels of x range over"):
        LossThreshold().score(target, x[:2], np.array([0, 10]))
    with pytest.raises(CapabilityError, match="needs scores access; the model offers only labels"):
        LossThreshold().score(LabelsOnly(target), x[:5], y[:5])
    with pytest.raises(InputError, match="must be fitted first"):
        LossThreshold(per_class=True).score(target, x[:5], y[:5])


def test_lira_refuses_shadows_that_do_not_fit_the_population(population):
    x, y, _ = population
    flat = TorchClassifier(nn.Linear(64, 10), (64,), 10)
    with pytest.raises(InputError, match=r"shadow 0 takes inputs of shape \(64,\)"):
        LiRA(shadows=2).fit(x[:10], y[:10], lambda *_: flat)
    labels_only = LabelsOnly(TorchClassifier(wide_mlp(), (1, 8, 8), 10))
    with pytest.raises(CapabilityError, match="shadow 0 needs scores access"):
        LiRA(shadows=2).fit(x[:10], y[:10], lambda *_: labels_only)
