"""Poisoning attacks: triggers land where and as they should, rates and seeds hold, backdoors take."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.attacks.poisoning import BadNets, Blended, LabelFlip, PoisonedSet, attack_success_rate
from bastion.core.errors import InputError
from bastion.defenses.training import train_classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """200 random 1x8x8 images in [0, 0.5) (so a stamped patch at 1.0 is unmistakable), 10 balanced labels."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 0.5, size=(200, 1, 8, 8)).astype(np.float32), np.arange(200, dtype=np.int64) % 10


@pytest.fixture(scope="module")
def backdoored(digits_arrays) -> tuple[TorchClassifier, BadNets, PoisonedSet]:
    """``digits_cnn`` trained 15 epochs on the first 1200 digits with 5% BadNets poison (target 0)."""
    x, y = digits_arrays
    attack = BadNets(target_class=0)
    poisoned = attack.poison(x[:1200], y[:1200], rate=0.05, seed=0)
    torch.manual_seed(0)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    train_classifier(model, poisoned.x, poisoned.y, epochs=15, seed=0)
    return model, attack, poisoned


# --- BadNets -------------------------------------------------------------------------------------


def test_badnets_stamps_a_3x3_patch_at_the_upper_bound_one_pixel_from_the_bottom_right(images):
    x, _ = images
    stamped = BadNets().apply_trigger(x)
    patch = np.zeros((8, 8), dtype=bool)
    patch[4:7, 4:7] = True  # rows/cols H-4..H-2: a 1-pixel margin from the bottom and right edges
    assert np.all(stamped[:, :, patch] == 1.0)
    np.testing.assert_array_equal(stamped[:, :, ~patch], x[:, :, ~patch])
    assert stamped.dtype == x.dtype and isinstance(stamped, np.ndarray)


@pytest.mark.parametrize(("kwargs", "rows", "cols", "value"), [
    ({"size": 2, "position": "top-left"}, slice(1, 3), slice(1, 3), 1.0),
    ({"size": 2, "position": "top-right", "margin": 0}, slice(0, 2), slice(6, 8), 1.0),
    ({"size": 1, "position": (3, 5), "value": 0.0}, slice(3, 4), slice(5, 6), 0.0),
    ({"bounds": (-1.0, 2.0)}, slice(4, 7), slice(4, 7), 2.0),
])
def test_badnets_patch_is_configurable(images, kwargs, rows, cols, value):
    x, _ = images
    stamped = BadNets(**kwargs).apply_trigger(x)
    assert np.all(stamped[:, :, rows, cols] == value)
    changed = np.zeros((8, 8), dtype=bool)
    changed[rows, cols] = True
    np.testing.assert_array_equal(stamped[:, :, ~changed], x[:, :, ~changed])


def test_badnets_poisons_the_rate_of_the_whole_set_from_non_target_rows_and_relabels(images):
    x, y = images
    result = BadNets(target_class=3).poison(x, y, rate=0.1, seed=1)
    assert result.count == 20 and result.rate == pytest.approx(0.1)
    rows = result.source_indices
    np.testing.assert_array_equal(np.flatnonzero(result.poisoned), rows)
    assert np.all(y[rows] != 3) and np.all(result.original_labels == y[rows])
    assert np.all(result.y[rows] == 3) and np.all(result.x[rows][:, :, 4:7, 4:7] == 1.0)
    clean = ~result.poisoned
    np.testing.assert_array_equal(result.x[clean], x[clean])
    np.testing.assert_array_equal(result.y[clean], y[clean])
    assert result.params["attack"] == "badnets" and result.params["rate"] == 0.1


def test_poisoning_is_reproducible_under_a_seed_and_varies_across_seeds(images):
    x, y = images
    attack = BadNets()
    first, again, other = (attack.poison(x, y, rate=0.2, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(first.source_indices, again.source_indices)
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.source_indices, other.source_indices)


def test_torch_in_gives_torch_out_with_the_same_dtype(images):
    x, y = images
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y)
    result = BadNets().poison(xt, yt, rate=0.05, seed=0)
    assert isinstance(result.x, torch.Tensor) and result.x.dtype == torch.float64
    assert isinstance(result.y, torch.Tensor) and result.y.dtype == torch.int64
    triggered = Blended().apply_trigger(xt)
    assert isinstance(triggered, torch.Tensor) and triggered.shape == xt.shape


def test_rate_zero_and_one(images):
    x, y = images
    assert BadNets().poison(x, y, rate=0.0).count == 0
    with pytest.raises(InputError, match="eligible"):
        BadNets().poison(x, y, rate=1.0)  # 20 rows are already of the target class


# --- blended --------------------------------------------------------------------------------------


def test_blended_mixes_the_pattern_at_alpha_for_poison_and_trigger_alpha_for_tests(images):
    x, y = images
    attack = Blended(target_class=0, alpha=0.1, trigger_alpha=0.2, pattern_seed=5)
    pattern = attack.pattern((1, 8, 8))
    assert pattern.min() >= 0 and pattern.max() <= 1
    np.testing.assert_array_equal(pattern, Blended(pattern_seed=5).pattern((1, 8, 8)))
    result = attack.poison(x, y, rate=0.1, seed=0)
    rows = result.source_indices
    np.testing.assert_allclose(result.x[rows], 0.9 * x[rows] + 0.1 * pattern, atol=1e-6)
    assert np.all(result.y[rows] == 0)
    np.testing.assert_allclose(attack.apply_trigger(x), 0.8 * x + 0.2 * pattern, atol=1e-6)


def test_blended_accepts_a_given_pattern_and_checks_it(images):
    x, _ = images
    pattern = np.ones((1, 8, 8))
    np.testing.assert_allclose(Blended(pattern=pattern, trigger_alpha=0.5).apply_trigger(x), 0.5 * x + 0.5,
                               atol=1e-6)
    with pytest.raises(InputError, match="shape"):
        Blended(pattern=np.ones((1, 4, 4))).apply_trigger(x)
    with pytest.raises(InputError, match="bounds"):
        Blended(pattern=np.full((1, 8, 8), 2.0))


# --- label flips ------------------------------------------------------------------------------------


def test_random_label_flips_change_exactly_the_chosen_labels(images):
    x, y = images
    result = LabelFlip().poison(x, y, rate=0.15, seed=3)
    assert result.count == 30
    changed = np.flatnonzero(result.y != y)
    np.testing.assert_array_equal(changed, result.source_indices)  # every chosen label really changes
    assert result.y.min() >= 0 and result.y.max() <= 9
    assert result.x is x  # inputs untouched


def test_source_to_target_flips(images):
    x, y = images
    result = LabelFlip(source=3, target=8).poison(x, y, rate=0.05, seed=0)
    assert result.count == 10
    assert np.all(y[result.source_indices] == 3) and np.all(result.y[result.source_indices] == 8)
    assert np.all(result.original_labels == 3)
    with pytest.raises(InputError, match="only 20 are eligible"):
        LabelFlip(source=3, target=8).poison(x, y, rate=0.2)


def test_flips_to_a_target_come_from_other_classes(images):
    x, y = images
    result = LabelFlip(target=2).poison(x, y, rate=0.25, seed=0)
    assert np.all(y[result.source_indices] != 2) and np.all(result.y[result.source_indices] == 2)


# --- attack success rate --------------------------------------------------------------------------


def test_asr_is_high_on_a_backdoored_model_and_low_on_a_clean_one(backdoored, digits_model, digits_test):
    model, attack, _ = backdoored
    x_test, y_test = digits_test
    assert attack_success_rate(model, x_test, y_test, attack) >= 0.9
    assert attack_success_rate(digits_model, x_test, y_test, attack) <= 0.3
    # the backdoor costs little clean accuracy
    accuracy = float((model.predict(x_test) == y_test).float().mean())
    assert accuracy >= 0.9


def test_asr_leaves_out_target_class_points(digits_model, digits_test):
    x_test, y_test = digits_test
    only_target = y_test == 0
    with pytest.raises(InputError, match="target class"):
        attack_success_rate(digits_model, x_test[only_target], y_test[only_target], BadNets(0))


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_rate_outside_unit_interval_is_refused(images, rate):
    x, y = images
    with pytest.raises(InputError, match="rate"):
        BadNets().poison(x, y, rate=rate)


def test_wrong_shapes_and_lengths_are_refused(images):
    x, y = images
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        BadNets().poison(x.reshape(200, 64), y, rate=0.1)
    with pytest.raises(InputError, match="same length"):
        BadNets().poison(x, y[:-1], rate=0.1)
    with pytest.raises(InputError, match=r"shape \(N,\)"):
        LabelFlip().poison(x, y[:, None], rate=0.1)
    with pytest.raises(InputError, match="integer"):
        LabelFlip().poison(x, y.astype(np.float32), rate=0.1)
    with pytest.raises(InputError, match="does not fit"):
        BadNets(size=8).apply_trigger(x)


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: BadNets(target_class=-1), "target_class"),
    (lambda: BadNets(size=0), "size"),
    (lambda: BadNets(position="middle"), "position"),
    (lambda: BadNets(value=3.0), "outside the bounds"),
    (lambda: Blended(alpha=0.0), "alpha"),
    (lambda: Blended(trigger_alpha=1.5), "trigger_alpha"),
    (lambda: LabelFlip(source=2, target=2), "same class"),
])
def test_bad_parameters_are_refused(factory, match):
    with pytest.raises(InputError, match=match):
        factory()
