"""Dataset audits: duplicates, leakage, outliers, label issues and poison detectors find what was planted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from bastion.attacks.poisoning import BadNets, LabelFlip
from bastion.core.errors import InputError
from bastion.core.ids import sample_ids
from bastion.data.audit import (
    AuditResult,
    exact_duplicates,
    label_issues,
    leakage,
    near_duplicates,
    outliers,
    poison_audit,
)
from bastion.data.sources import load_dataset
from bastion.defenses.poison import ActivationClustering, PoisonConsensus, SpectralSignatures, penultimate_features
from bastion.defenses.poison.sweep import sweep_suspected_class
from bastion.defenses.training import CrossEntropy, fit
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn

BUDGET = 0.02


@pytest.fixture(scope="module")
def digits_train():
    """scikit-learn digits, the 1257-sample training split, ``(N, 1, 8, 8)`` in [0, 1]."""
    return load_dataset("digits:train")


@pytest.fixture(scope="module")
def poisoned_case(digits_train):
    """``digits_cnn`` trained on digits with 5% BadNets poison: (features, labels, poisoned mask, ids)."""
    poisoned = BadNets(target_class=0).poison(digits_train.x, digits_train.y, rate=0.05, seed=0)
    torch.manual_seed(0)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    fit(model, poisoned.x, poisoned.y, CrossEntropy(), epochs=10, batch_size=64, optimizer="adam", lr=1e-3, seed=0)
    features = penultimate_features(model, poisoned.x)
    return features, poisoned.y, poisoned.poisoned, sample_ids(poisoned.x, poisoned.y)


def _noisy(x: np.ndarray, seed: int, scale: float = 0.01) -> np.ndarray:
    return np.clip(x + np.random.default_rng(seed).normal(0, scale, x.shape), 0, 1).astype(np.float32)


# --- the record ----------------------------------------------------------------------------------------


def test_audit_result_lists_flagged_ids_most_suspicious_first_and_checks_lengths():
    result = AuditResult(name="t", ids=["a", "b", "c"], scores=[0.1, 0.9, 0.5], flags=[True, True, False])
    assert result.flagged_ids() == ["b", "a"] and result.flagged_count == 2
    assert result.top(1) == [("b", 0.9)]
    assert AuditResult.model_validate_json(result.model_dump_json()) == result
    with pytest.raises(ValidationError, match="one entry per sample"):
        AuditResult(name="t", ids=["a"], scores=[0.1, 0.2], flags=[True])


# --- duplicates and leakage --------------------------------------------------------------------------


def test_exact_duplicates_keep_one_copy_and_flag_conflicting_labels(digits_train):
    x, y = digits_train.x[:100], digits_train.y[:100]
    x = np.concatenate([x, x[[0]], x[[1]]])
    y = np.concatenate([y, y[[0]], [(y[1] + 1) % 10]])
    ids = sample_ids(x, y)
    result = exact_duplicates(ids, x, y)
    flagged = set(np.flatnonzero(result.flags))
    assert flagged == {100, 1, 101}  # the redundant copy of row 0; both rows of the conflicting pair
    assert result.scores[0] == result.scores[100] == 1.0 and result.scores[1] == result.scores[101] == 2.0
    assert result.summary["group_count"] == 2 and result.summary["conflicting_groups"] == 1


def test_near_duplicates_find_planted_noisy_copies(digits_train):
    x = digits_train.x[:300]
    planted = _noisy(x[:5], seed=1)
    data = np.concatenate([x, planted])
    ids = [f"s{i}" for i in range(len(data))]
    result = near_duplicates(ids, data)
    assert set(result.flagged_ids()) == {f"s{i}" for i in range(300, 305)}
    groups = result.summary["groups"]
    assert all([f"s{i}", f"s{300 + i}"] in groups for i in range(5))
    assert min(result.scores[300:]) >= 0.99


def test_near_duplicates_on_features(digits_train):
    features = digits_train.x[:50].reshape(50, -1)
    data = np.concatenate([features, features[[7]] * 1.001])
    result = near_duplicates([str(i) for i in range(51)], features=data)
    assert result.flagged_ids() == ["50"]


def test_leakage_names_the_training_twin_of_exact_and_near_copies(digits_train):
    train = digits_train.x[:500]
    test = np.concatenate([load_dataset("digits:test").x[:100], train[[0, 1, 2]], _noisy(train[[3, 4, 5]], seed=2)])
    train_ids = [f"train{i}" for i in range(len(train))]
    test_ids = [f"test{i}" for i in range(len(test))]
    result = leakage(train_ids, train, test_ids, test)
    assert set(result.flagged_ids()) == {f"test{i}" for i in range(100, 106)}
    twins = {m["test_id"]: (m["train_id"], m["exact"]) for m in result.summary["matches"]}
    assert twins == {f"test{100 + i}": (f"train{i}", i < 3) for i in range(6)}
    assert result.summary["exact"] == 3 and result.summary["near"] == 3


# --- outliers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["knn", "isolation-forest"])
def test_outliers_find_planted_noise_images(digits_train, method):
    x = digits_train.x[:300]
    noise = np.random.default_rng(3).uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32)
    data = np.concatenate([x, noise])
    result = outliers([str(i) for i in range(306)], data, method=method)
    flags = np.asarray(result.flags)
    assert flags[300:].all()
    assert flags[:300].mean() <= 0.03
    top = outliers([str(i) for i in range(306)], data, method=method, contamination=6 / 306)
    assert set(top.flagged_ids()) == {str(i) for i in range(300, 306)}


# --- label issues --------------------------------------------------------------------------------------------


def test_cleanlab_finds_planted_label_flips(digits_train):
    flipped = LabelFlip().poison(digits_train.x, digits_train.y, rate=0.05, seed=0)
    ids = [str(i) for i in range(len(flipped.y))]
    result = label_issues(ids, flipped.y, x=flipped.x)
    flags = np.asarray(result.flags)
    assert flags[flipped.poisoned].mean() >= 0.8
    assert flags[~flipped.poisoned].mean() <= 0.02
    scores = np.asarray(result.scores)
    assert scores[flipped.poisoned].mean() > scores[~flipped.poisoned].mean() + 0.5
    suggested = result.summary["suggested_labels"]
    found = [i for i in flipped.source_indices if flags[i]]
    originals = dict(zip(flipped.source_indices, flipped.original_labels, strict=True))
    assert np.mean([suggested[str(i)] == originals[i] for i in found]) >= 0.8


def test_label_issues_accept_given_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    probs = np.tile([0.95, 0.05], (8, 1))
    probs[3:7] = [0.05, 0.95]
    probs[7] = [0.02, 0.98]  # labelled 0, confidently 1
    result = label_issues([str(i) for i in range(8)], labels, pred_probs=probs)
    assert result.flagged_ids() == ["7"] and result.summary["suggested_labels"] == {"7": 1}


# --- poison detectors ------------------------------------------------------------------------------------


def _rates(flags: np.ndarray, poisoned: np.ndarray) -> tuple[float, float]:
    flags = np.asarray(flags, dtype=bool)
    return float(flags[poisoned].mean()), float(flags[~poisoned].mean())


def test_detectors_rank_the_poison_first_within_the_target_class(poisoned_case):
    features, labels, poisoned, _ = poisoned_case
    target = labels == 0
    count = int(poisoned.sum())
    for detector in (SpectralSignatures(), ActivationClustering()):
        scores = detector.fit(features, labels).zscores_
        top = np.argsort(-scores[target])[:count]
        assert poisoned[target][top].mean() >= 0.9, detector.name


@pytest.mark.parametrize(("detectors", "min_recall"), [
    (None, 0.85),                          # the consensus of both
    ([SpectralSignatures()], 0.85),         # each detector alone under the same rule
    ([ActivationClustering()], 0.4),        # AC is the weaker one on 8x8 digits
])
def test_detectors_find_badnets_poison_within_the_false_positive_budget(poisoned_case, detectors, min_recall):
    features, labels, poisoned, _ = poisoned_case
    consensus = PoisonConsensus(detectors, fp_budget=BUDGET).fit(features, labels)
    recall, fpr = _rates(consensus.flags_, poisoned)
    assert recall >= min_recall and fpr <= BUDGET
    assert consensus.estimated_fpr_ <= BUDGET


def test_consensus_stays_near_its_budget_on_a_clean_model(digits_model, digits_arrays):
    """The rule keeps its *estimate* under the budget; on sets this small the measured rate can pass it, since a
    digit class's natural sub-cluster looks like poison by counts (RESULTS.md, issue 4 section 3: 2.4-3.2% flagged
    at a 2% budget over six seeds). The digits model's last bits differ from one CPU to another, so the bound is
    that measured margin, not the budget itself."""
    x, y = digits_arrays
    features = penultimate_features(digits_model, x[:1200])
    for budget in (0.02, 0.05):
        consensus = PoisonConsensus(fp_budget=budget).fit(features, y[:1200])
        swept = consensus.sweep_.added if consensus.sweep_ is not None else 0
        assert consensus.estimated_fpr_ <= budget
        assert consensus.flags_.sum() - swept <= 1.75 * budget * 1200  # the sweep's additions are outside the rule
        assert swept <= 0.01 * 1200


def test_the_sweep_finishes_the_cluster_and_only_adds(poisoned_case):
    features, labels, poisoned, _ = poisoned_case
    plain = PoisonConsensus(sweep=False).fit(features, labels)
    swept = PoisonConsensus().fit(features, labels)
    assert plain.sweep_ is None and swept.sweep_ is not None
    assert (swept.flags_ >= plain.flags_).all()
    assert swept.sweep_.added == swept.flags_.sum() - plain.flags_.sum()
    assert swept.sweep_.swept_class == int(labels[poisoned][0])
    assert _rates(swept.flags_, poisoned)[0] >= _rates(plain.flags_, poisoned)[0]


def test_no_sweep_without_a_standout_class():
    flags = np.zeros(400, dtype=bool)
    flags[np.arange(400) % 10 < 4] = True  # 10% of every class alike
    labels = np.arange(400) % 4
    sweep = sweep_suspected_class(np.random.default_rng(0).normal(size=(400, 3)), labels, flags)
    assert sweep.swept_class is None and sweep.added == 0 and (sweep.flags == flags).all()


def test_fisher_combination_and_label_scores(poisoned_case):
    features, labels, poisoned, _ = poisoned_case
    noise = np.random.default_rng(0).uniform(0, 1, len(labels))  # an uninformative label score
    consensus = PoisonConsensus(combine="fisher").fit(features, labels, label_scores=noise)
    assert set(consensus.components_) == {"spectral-signatures", "activation-clustering", "label-issues"}
    recall, fpr = _rates(consensus.flags_, poisoned)
    assert recall >= 0.8 and fpr <= BUDGET


def test_native_flags_follow_the_papers_rules(poisoned_case):
    features, labels, poisoned, _ = poisoned_case
    spectral = SpectralSignatures(expected_rate=0.05).fit(features, labels)
    for label in np.unique(labels):  # 1.5 * epsilon of every class
        assert spectral.flags_[labels == label].sum() == round(0.075 * (labels == label).sum())
    by_z = SpectralSignatures(z_threshold=4.0).fit(features, labels)
    np.testing.assert_array_equal(by_z.flags_, by_z.zscores_ > 4.0)
    clustering = ActivationClustering().fit(features, labels)
    target = next(c for c in clustering.clusters_ if c.label == 0)
    assert target.suspicious and target.smaller_fraction < 0.35
    assert clustering.flags_[poisoned].mean() >= 0.9


def test_poison_audit_reports_by_id(poisoned_case):
    features, labels, poisoned, ids = poisoned_case
    results = poison_audit(ids, features, labels)
    assert set(results) == {"spectral-signatures", "activation-clustering", "poison-consensus"}
    consensus = results["poison-consensus"]
    assert consensus.ids == ids and len(consensus.scores) == len(ids)
    poisoned_ids = {ids[i] for i in np.flatnonzero(poisoned)}
    flagged = consensus.flagged_ids()
    assert len(poisoned_ids & set(flagged)) >= 0.85 * len(poisoned_ids)
    assert consensus.summary["estimated_fpr"] <= BUDGET
    assert results["activation-clustering"].summary["clusters"][0]["label"] == 0


def test_penultimate_features_read_the_last_linear_layer(digits_model, digits_arrays):
    x, _ = digits_arrays
    features = penultimate_features(digits_model, torch.from_numpy(x[:10]), batch_size=3)
    assert features.shape == (10, 128) and features.dtype == np.float32
    assert (features >= 0).all()  # after the ReLU
    convolutional = TorchClassifier(nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()), (1, 8, 8), 10)
    with pytest.raises(InputError, match="no nn.Linear"):
        penultimate_features(convolutional, x[:4])
    with pytest.raises(InputError, match="shape"):
        penultimate_features(digits_model, x[:4, 0])


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.0, 1.0, -0.1, 1.5, float("nan"), True])
def test_budget_outside_the_open_unit_interval_is_refused(poisoned_case, budget):
    features, labels, _, ids = poisoned_case
    with pytest.raises(InputError, match="fp_budget"):
        PoisonConsensus(fp_budget=budget)
    with pytest.raises(InputError, match="fp_budget"):
        poison_audit(ids, features, labels, fp_budget=budget)


def test_mismatched_lengths_and_shapes_are_refused(poisoned_case, digits_train):
    features, labels, _, ids = poisoned_case
    with pytest.raises(InputError, match="one row per id"):
        poison_audit(ids[:-1], features, labels)
    with pytest.raises(InputError, match="one row per id"):
        poison_audit(ids, features, labels[:-1])
    with pytest.raises(InputError, match=r"\(N, D\)"):
        SpectralSignatures().fit(features[:, 0], labels)
    with pytest.raises(InputError, match="labels"):
        ActivationClustering().fit(features, labels[:-1])
    with pytest.raises(InputError, match="label_scores"):
        PoisonConsensus().fit(features, labels, label_scores=np.zeros(3))
    x = digits_train.x[:20]
    with pytest.raises(InputError, match="one row per id"):
        near_duplicates([str(i) for i in range(19)], x)
    with pytest.raises(InputError, match="one row per id"):
        exact_duplicates([str(i) for i in range(20)], x, digits_train.y[:19])
    with pytest.raises(InputError, match="pred_probs"):
        label_issues([str(i) for i in range(20)], digits_train.y[:20], pred_probs=np.ones((20, 3)))
    with pytest.raises(InputError, match="x or their features|samples \\(x\\)"):
        outliers([str(i) for i in range(20)])


@pytest.mark.parametrize(("call", "match"), [
    (lambda x, ids: near_duplicates(ids, x, threshold=1.5), "threshold"),
    (lambda x, ids: outliers(ids, x, contamination=0.9), "contamination"),
    (lambda x, ids: outliers(ids, x, method="lof"), "method"),
    (lambda x, ids: outliers(ids, x, k=0), "k must"),
    (lambda x, ids: label_issues(ids, np.zeros(len(ids), dtype=int), x=x), "2 classes"),
    (lambda x, ids: near_duplicates("abc", x), "list of sample id"),
])
def test_bad_audit_parameters_are_refused(digits_train, call, match):
    x = digits_train.x[:20]
    with pytest.raises(InputError, match=match):
        call(x, [str(i) for i in range(20)])
