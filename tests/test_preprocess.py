"""Preprocessing defenses, their adaptive (BPDA/EOT) view, and the defended scan that runs both passes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from bastion.core.errors import InputError
from bastion.core.records import ScanRecord
from bastion.data.sources import Dataset
from bastion.defenses.preprocess import (
    EOT_FIRST_DRAW,
    BitDepthReduction,
    GaussianBlur,
    GaussianNoise,
    JpegCompression,
    MedianFilter,
    PreprocessedClassifier,
    RandomResizePad,
    format_spec,
    parse_preprocess,
)
from bastion.defenses.preprocess.jpeg import quantisation_table
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.scan.adaptive import DefenseSettings, run_defended_scan
from bastion.scan.report.advice import advise
from bastion.scan.runner import ScanSettings

STEPS = [
    BitDepthReduction(3),
    MedianFilter(3),
    JpegCompression(50),
    GaussianBlur(0.8),
    GaussianNoise(0.1, seed=1),
    RandomResizePad(0.6, seed=1),
]
ids = [step.name for step in STEPS]


@pytest.fixture(scope="module")
def images(digits_test) -> torch.Tensor:
    return digits_test[0][:32]


# ---------------------------------------------------------------- every step


@pytest.mark.parametrize("step", STEPS, ids=ids)
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_a_step_keeps_shape_dtype_and_bounds(step, bounds, images):
    low, high = bounds
    x = low + images * (high - low)
    out = step.fit(bounds=bounds)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= low - 1e-6 and float(out.max()) <= high + 1e-6
    assert not torch.equal(out, x), "the step should change the digits"


@pytest.mark.parametrize("step", STEPS, ids=ids)
def test_a_step_is_deterministic_and_batch_independent(step, images):
    step.fit()
    out = step(images)
    assert torch.equal(step(images), out)
    assert torch.allclose(step(images[5:6]), out[5:6], atol=1e-6)  # same sample alone: same result
    if step.random:
        assert not torch.equal(step(images, draw=1), out)


@pytest.mark.parametrize("step", STEPS, ids=ids)
def test_a_step_spec_parses_back_to_the_same_parameters(step):
    (parsed,) = parse_preprocess(step.spec(), seed=1)
    assert type(parsed) is type(step) and parsed.get_params() == step.get_params()
    assert step.fit() is step


def test_steps_declare_their_capabilities():
    capabilities = {step.name: (step.differentiable, step.random) for step in STEPS}
    assert capabilities == {"bits": (False, False), "median": (True, False), "jpeg": (False, False),
                            "blur": (True, False), "noise": (True, True), "resize": (True, True)}


# ---------------------------------------------------------------- bit depth


def test_bit_depth_gives_exact_levels():
    x = torch.linspace(0, 1, 11)[None]
    two_bits = BitDepthReduction(2).fit()(x)
    expected = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3]) / 3
    assert torch.allclose(two_bits, expected[None])
    assert set(BitDepthReduction(1).fit(bounds=(-1, 1))(torch.rand(4, 7) * 2 - 1).unique().tolist()) == {-1.0, 1.0}
    digits_levels = torch.arange(17)[None] / 16  # digits take 17 levels; 4 bits keep 16
    assert len(BitDepthReduction(4).fit()(digits_levels).unique()) == 16
    assert torch.equal(BitDepthReduction(8).fit()(torch.tensor([[0.0, 1.0]])), torch.tensor([[0.0, 1.0]]))


# ---------------------------------------------------------------- median filter


def test_median_filter_removes_salt_and_keeps_edges():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    assert torch.equal(MedianFilter(3).fit()(image), torch.zeros_like(image))
    edge = torch.zeros(1, 1, 5, 5)
    edge[..., 3:] = 1.0
    assert torch.equal(MedianFilter(3).fit()(edge), edge)


def test_median_filter_matches_a_reference_with_reflect_padding():
    from scipy.ndimage import median_filter

    image = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    ours = MedianFilter(3).fit()(image)
    # torch's "reflect" (d c b | a b c d) is scipy's "mirror".
    reference = median_filter(image.numpy(), size=(1, 1, 3, 3), mode="mirror")
    assert np.allclose(ours.numpy(), reference)
    corner = torch.tensor([[[[1.0, 5.0, 9.0], [2.0, 6.0, 7.0], [3.0, 4.0, 8.0]]]])
    # The top-left window after reflect padding is [[6,2,6],[5,1,5],[6,2,6]]: median 5.
    assert float(MedianFilter(3).fit()(corner)[0, 0, 0, 0]) == 5.0


# ---------------------------------------------------------------- JPEG


def test_jpeg_error_falls_as_quality_rises(images):
    errors = [float((JpegCompression(q).fit()(images) - images).abs().mean()) for q in (5, 10, 25, 50, 75, 90, 100)]
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
    assert errors[-1] < 1 / 255  # quality 100: every table entry is 1, only rounding is left


def test_jpeg_tables_scale_as_libjpeg_does():
    assert float(quantisation_table(50)[0, 0]) == 16 and bool((quantisation_table(100) == 1).all())
    assert float(quantisation_table(10)[0, 0]) == 80 and float(quantisation_table(1).max()) == 255


def test_jpeg_is_close_to_a_real_codec_on_a_grey_image():
    from PIL import Image

    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 256, (4, 4)), np.ones((8, 8)))
    pixels = np.clip(blocks + rng.normal(0, 20, blocks.shape), 0, 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=75)
    codec = np.asarray(Image.open(buffer), dtype=np.float64)
    ours = JpegCompression(75).fit()(torch.tensor(pixels / 255.0)[None, None]).numpy()[0, 0] * 255
    # libjpeg's integer DCT rounds differently by a level or two; the compression itself moves ~7 levels.
    assert np.abs(ours - codec).mean() < 0.25 * np.abs(pixels - codec).mean()


def test_jpeg_handles_colour_and_sizes_that_are_not_multiples_of_eight():
    colour = torch.rand(2, 3, 10, 13, generator=torch.Generator().manual_seed(1))
    ycbcr = JpegCompression(75).fit()(colour)
    per_channel = JpegCompression(75, ycbcr=False).fit()(colour)
    assert ycbcr.shape == colour.shape and not torch.equal(ycbcr, per_channel)
    grey = torch.rand(2, 10, 13)
    assert JpegCompression(75).fit()(grey).shape == grey.shape


# ---------------------------------------------------------------- blur, noise, resize


def test_blur_keeps_constants_and_is_differentiable(images):
    blur = GaussianBlur(1.0).fit()
    assert float(blur.kernel().sum()) == pytest.approx(1.0) and len(blur.kernel()) == 7
    assert torch.allclose(blur(torch.full((2, 1, 8, 8), 0.3)), torch.full((2, 1, 8, 8), 0.3))
    x = images[:4].clone().requires_grad_(True)
    blur(x).sum().backward()
    assert x.grad is not None and bool((x.grad != 0).any())


def test_noise_has_the_asked_spread_and_is_keyed_per_input():
    noise = GaussianNoise(0.05, seed=3).fit()
    x = torch.full((64, 1, 8, 8), 0.5)
    x = x + torch.arange(64).reshape(-1, 1, 1, 1) * 1e-4  # distinct inputs, distinct draws
    delta = noise(x) - x
    assert float(delta.std()) == pytest.approx(0.05, rel=0.1)
    assert not torch.equal(delta[0], delta[1])
    assert not torch.equal(GaussianNoise(0.05, seed=4).fit()(x), noise(x))


def test_resize_pad_with_full_scale_is_the_identity(images):
    assert torch.allclose(RandomResizePad(1.0).fit()(images), images, atol=1e-6)
    shrunk = RandomResizePad(0.5).fit()(images)
    assert bool((shrunk == 0).flatten(1).any(dim=1).all())  # every canvas has padding


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BitDepthReduction(0), "bits must be an integer in 1..16"),
        (lambda: BitDepthReduction(2.5), "bits must be an integer"),
        (lambda: MedianFilter(0), "median window size must be an integer >= 1"),
        (lambda: JpegCompression(0), "JPEG quality must be an integer in 1..100"),
        (lambda: GaussianBlur(0.0), "blur sigma must be > 0"),
        (lambda: GaussianNoise(float("nan")), "noise sigma must be a finite number"),
        (lambda: RandomResizePad(1.5), "resize min_scale must be > 0 and <= 1"),
        (lambda: BitDepthReduction().fit(bounds=(1, 0)), "low < high"),
        (lambda: BitDepthReduction()(torch.rand(2, 3)), "not fitted: call fit"),
        (lambda: MedianFilter().fit()(torch.rand(2, 30)), "works on images"),
        (lambda: MedianFilter(17).fit()(torch.rand(2, 1, 8, 8)), "needs images larger than 8 pixels"),
        (lambda: BitDepthReduction().fit()(torch.ones(2, 3, dtype=torch.int64)), "floating-point"),
        (lambda: PreprocessedClassifier(_linear_model(), ["bits:4"]), "steps must be preprocessors"),
        (lambda: PreprocessedClassifier(_linear_model(), [], draws=0), "draws must be an integer >= 1"),
        (lambda: PreprocessedClassifier(TorchClassifier(nn.Linear(30, 2), (30,), 2), [MedianFilter()]),
         r"median works on images \(N, C, H, W\) or \(N, H, W\); got per-sample shape \(30,\)"),
        (lambda: PreprocessedClassifier(_linear_model(), []).adaptive(0), "eot_samples must be an integer >= 1"),
    ],
)
def test_bad_parameters_and_inputs_give_clear_errors(make, message):
    with pytest.raises(InputError, match=message):
        make()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sharpen:2", "unknown preprocessing step 'sharpen'; valid steps: bits:N"),
        ("bits:four", "bits needs an integer, got 'four'"),
        ("median:3.5", "median needs an integer"),
        ("jpeg:101", "JPEG quality must be an integer in 1..100, got 101"),
        ("noise:-0.1", "noise sigma must be > 0"),
        ("blur:x", "blur needs a number"),
        ("bits:4,,median:3", "has an empty step"),
        ("", "has an empty step"),
    ],
)
def test_bad_specs_name_the_problem_and_the_valid_steps(spec, message):
    with pytest.raises(InputError) as error:
        parse_preprocess(spec, option="--preprocess")
    assert message in str(error.value) and "--preprocess" in str(error.value)
    assert "jpeg:Q" in str(error.value) or "empty" not in message


def test_a_spec_builds_the_pipeline_in_order():
    steps = parse_preprocess(" bits:4, median , JPEG:60,noise:0.2", seed=9)
    assert [type(s) for s in steps] == [BitDepthReduction, MedianFilter, JpegCompression, GaussianNoise]
    assert steps[1].size == 3 and steps[2].quality == 60 and steps[3].get_params() == {"sigma": 0.2, "seed": 9}
    assert format_spec(steps) == "bits:4,median:3,jpeg:60,noise:0.2"


# ---------------------------------------------------------------- the defended classifier and its adaptive view


def _linear_model(bounds: tuple[float, float] = (0.0, 1.0)) -> TorchClassifier:
    torch.manual_seed(0)
    return TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (1, 8, 8), 10, bounds=bounds)


def _input_gradient(model, x: torch.Tensor, label: int = 3) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    model.logits(x)[:, label].sum().backward()
    return x.grad


def test_the_defended_model_applies_the_steps_then_the_model(digits_model, images):
    defended = PreprocessedClassifier(digits_model, [BitDepthReduction(2), MedianFilter(3)])
    expected = digits_model.logits(MedianFilter(3).fit()(BitDepthReduction(2).fit()(images)))
    assert torch.allclose(defended.logits(images), expected)
    assert torch.equal(defended.predict(images), expected.argmax(1))
    assert (defended.num_classes, defended.input_shape, defended.bounds, defended.access) == (
        10, (1, 8, 8), (0.0, 1.0), "white")
    assert defended.get_params()["steps"][0] == {"name": "bits", "params": {"bits": 2}, "differentiable": False,
                                                 "random": False}


def test_plain_gradients_through_rounding_are_zero_and_bpda_gives_the_identity_s(digits_model, images):
    defended = PreprocessedClassifier(digits_model, [BitDepthReduction(3)])
    assert bool((_input_gradient(defended, images) == 0).all())  # what fools a plain attack
    squeezed = BitDepthReduction(3).fit()(images)
    bpda = _input_gradient(defended.adaptive(), images)
    assert torch.allclose(bpda, _input_gradient(digits_model, squeezed))  # model gradient at q(x), identity for q
    assert bool((bpda != 0).any())


def test_the_adaptive_view_has_the_defended_values_and_predictions(digits_model, images):
    for steps in ([JpegCompression(50)], [GaussianNoise(0.1), BitDepthReduction(4)]):
        defended = PreprocessedClassifier(digits_model, steps, draws=2)
        view = defended.adaptive(eot_samples=3)
        x = images.clone().requires_grad_(True)
        assert torch.equal(view.logits(x).detach(), defended.logits(images))
        assert torch.equal(view.predict(images), defended.predict(images))


def test_eot_gradient_is_the_mean_of_the_gradients_over_its_draws(digits_model, images):
    noise = GaussianNoise(0.1, seed=2)
    defended = PreprocessedClassifier(digits_model, [noise])
    view = defended.adaptive(eot_samples=4)
    from bastion.defenses.preprocess import content_keys

    keys = content_keys(images)
    per_draw = []
    for j in range(4):
        x = images.clone().requires_grad_(True)
        digits_model.logits(noise(x, keys=keys, draw=EOT_FIRST_DRAW + j))[:, 3].sum().backward()
        per_draw.append(x.grad)
    assert torch.allclose(_input_gradient(view, images), torch.stack(per_draw).mean(0), atol=1e-6)
    assert not torch.allclose(per_draw[0], per_draw[1])


def test_a_random_defense_is_a_fixed_function_of_its_input(digits_model, images):
    defended = PreprocessedClassifier(digits_model, [GaussianNoise(0.3)], draws=3)
    assert torch.equal(defended.logits(images), defended.logits(images))
    assert torch.allclose(defended.logits(images[:4]), defended.logits(images)[:4], atol=1e-5)
    single = PreprocessedClassifier(digits_model, [GaussianNoise(0.3)], draws=1)
    assert not torch.allclose(single.logits(images), defended.logits(images))


# ---------------------------------------------------------------- the defended scan


def _dataset(digits_test, count: int) -> Dataset:
    x, y = digits_test
    return Dataset(x=x[:count].numpy(), y=y[:count].numpy(), class_names=[str(i) for i in range(10)],
                   description="digits test")


def _defended_scan(digits_model, digits_test, spec: str, count: int = 60, eps: float = 0.15, **defense):
    loaded = LoadedModel(classifier=digits_model, description="digits_cnn", sha256=None, kind="torch")
    settings = ScanSettings(eps=[eps], suite="quick", seed=0)
    return run_defended_scan(loaded, _dataset(digits_test, count), settings,
                             DefenseSettings(steps=parse_preprocess(spec), **defense))


@pytest.mark.parametrize("spec", ["bits:4", "jpeg:75"])
def test_the_adaptive_attack_breaks_what_the_plain_one_misses_and_the_gap_is_flagged(
        digits_model, digits_test, spec):
    outcome = _defended_scan(digits_model, digits_test, spec)
    defense, record = outcome.defense, outcome.record
    plain, adaptive = defense.plain.headline, record.headline
    plain_broken = sum(not s.robust for s in plain.samples)
    adaptive_broken = sum(not s.robust for s in adaptive.samples)
    assert adaptive_broken >= plain_broken
    assert adaptive.robust_accuracy < plain.robust_accuracy - 0.1
    assert defense.comparison[0].hides_gradients and defense.hides_gradients
    assert "zero-gradients" in {flag.check for flag in plain.flags}
    checks = [flag.check for flag in adaptive.flags]
    assert checks[0] == "adaptive-evaluation" and "defense-hides-gradients" in checks
    assert advise(record)[0].title == "This defense hides gradients; its plain robust accuracy is not real"
    assert {a.params["gradients"] for a in adaptive.attacks} == {"bpda"}
    assert {a.params["gradients"] for a in plain.attacks} == {"autograd"}
    assert defense.defense.steps[0].adaptive_gradient == "bpda" and defense.defense.spec == spec
    assert ScanRecord.model_validate_json(record.model_dump_json()) == record


def test_every_reported_break_fools_the_real_defended_model(digits_model, digits_test):
    outcome = _defended_scan(digits_model, digits_test, "bits:4", count=40)
    grid = outcome.examples[0]
    defended = PreprocessedClassifier(digits_model, [BitDepthReduction(4)])
    predictions = defended.predict(torch.from_numpy(grid.adversarial)).numpy()
    assert len(grid.sample_ids) and np.array_equal(predictions, grid.adversarial_predictions)
    assert bool((predictions != grid.labels).all())


def test_a_random_defense_is_scanned_with_eot_without_a_randomness_warning(digits_model, digits_test):
    outcome = _defended_scan(digits_model, digits_test, "noise:0.05", count=24, eot_samples=2)
    checks = {flag.check for result in outcome.record.results for flag in result.flags}
    assert "randomised-defense" in checks and "randomness" not in checks
    assert outcome.defense.adaptive_gradients == "eot-2"
    assert "keyed on a hash of the input" in outcome.defense.defense.prediction
    assert {a.params["gradients"] for a in outcome.record.headline.attacks} == {"eot-2"}


def test_a_differentiable_deterministic_defense_is_scanned_once(digits_model, digits_test):
    outcome = _defended_scan(digits_model, digits_test, "blur:0.5", count=24)
    row = outcome.defense.comparison[0]
    assert row.gap == 0 and not row.hides_gradients and outcome.defense.adaptive_gradients == "autograd"
    assert "ran once" in outcome.record.headline.flags[0].message
    assert all(item.title != "The evaluation may be unreliable" for item in advise(outcome.record)
               if item.level == "info")


def test_a_defended_scan_needs_steps_and_a_sane_threshold(digits_model, digits_test):
    loaded = LoadedModel(classifier=digits_model, description="m", sha256=None, kind="torch")
    settings = ScanSettings(eps=[0.1], suite="quick")
    with pytest.raises(InputError, match="at least one preprocessing step"):
        run_defended_scan(loaded, _dataset(digits_test, 4), settings, DefenseSettings(steps=[]))
    with pytest.raises(InputError, match="hide_threshold"):
        run_defended_scan(loaded, _dataset(digits_test, 4), settings,
                          DefenseSettings(steps=[BitDepthReduction()], hide_threshold=5))
