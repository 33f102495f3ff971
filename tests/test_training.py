"""The training loop and its methods: robustness gained, resume exactness, early stop, bad inputs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from bastion.attacks.evasion.pgd import PGD
from bastion.core.errors import ConfigError, InputError
from bastion.core.threat import ThreatModel
from bastion.defenses.ensemble import EnsembleClassifier
from bastion.defenses.training import (
    TRADES,
    CrossEntropy,
    EarlyStop,
    FastAdversarial,
    PGDAdversarial,
    TrainingRecord,
    distill,
    fit,
    method_names,
    objective_from_name,
    train_by_name,
    train_classifier,
)
from bastion.defenses.training import checkpoint as ckpt
from bastion.defenses.training import methods as methods_module
from bastion.defenses.training.averaging import WeightAverage
from bastion.defenses.training.optim import SCHEDULES, learning_rate, optimiser_settings
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier
from bastion.models.zoo import digits_cnn

EPS = 0.2


def tiny_mlp(seed: int = 0) -> TorchClassifier:
    """A small MLP with dropout (so the global torch generator matters), ``(N, 1, 8, 8)`` -> 10 logits."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    return TorchClassifier(net, (1, 8, 8), 10)


def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).float().mean())


def robust_accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    result = PGD(steps=20)(model, x, y, ThreatModel(eps=eps), seed=1)
    return float((~result.success).float().mean())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def train_data(digits_arrays) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_arrays
    return x[:600], y[:600]


@pytest.fixture(scope="module")
def val_data(digits_arrays) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_arrays
    return x[1400:1600], y[1400:1600]


# --- methods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pgd", "trades", "fast"])
def test_adversarial_training_raises_robust_accuracy_over_plain(name, train_data, digits_model, digits_test):
    x, y = train_data
    x_test, y_test = digits_test
    torch.manual_seed(0)
    model = TorchClassifier(digits_cnn(), (1, 8, 8), 10)
    objective = objective_from_name(name, ThreatModel(eps=EPS))
    record = fit(model, x, y, objective, epochs=4, batch_size=64, optimizer="adam", seed=0)
    assert record.method == name and record.losses[-1] < record.losses[0]
    plain = robust_accuracy(digits_model, x_test, y_test, EPS)
    hardened = robust_accuracy(model, x_test, y_test, EPS)
    assert plain < 0.15
    assert hardened > plain + 0.15, f"{name}: robust accuracy {hardened:.2f} vs plain {plain:.2f}"


def test_plain_fit_records_history_schedule_and_validation(train_data, val_data):
    x, y = train_data
    steps = []
    epochs_seen = []
    record = fit(tiny_mlp(), x, y, CrossEntropy(), epochs=3, batch_size=50, schedule="cosine",
                 validation=val_data, on_step=lambda step, total, loss: steps.append((step, total)),
                 on_epoch=lambda epoch, total, entry: epochs_seen.append((epoch, total, entry.epoch)))
    assert isinstance(record, TrainingRecord) and record.method == "plain"
    assert record.epochs == 3 and len(record.losses) == 3 and record.losses[-1] < record.losses[0]
    assert record.optimiser.optimizer == "sgd" and record.optimiser.schedule == "cosine"
    assert [e.lr for e in record.history] == sorted((e.lr for e in record.history), reverse=True)
    assert all(e.val_clean is not None and e.val_robust is None for e in record.history)
    assert record.history[-1].val_clean > 0.7 and record.train_accuracy > 0.7
    assert record.best_epoch is None and not record.stopped_early and record.resumed_from is None
    assert steps[-1] == (36, 36) and epochs_seen == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]
    assert TrainingRecord.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize("schedule, points", [
    ("constant", {0.0: 1.0, 0.5: 1.0, 1.0: 1.0}),
    ("cosine", {0.0: 1.0, 0.5: 0.5, 1.0: 0.0}),
    ("piecewise", {0.0: 1.0, 0.49: 1.0, 0.6: 0.1, 0.8: 0.01}),
    ("one-cycle", {0.0: 0.0, 0.2: 0.5, 0.4: 1.0, 0.7: 0.5, 1.0: 0.0}),
])
def test_schedules(schedule, points):
    factor = SCHEDULES[schedule]
    assert {p: pytest.approx(factor(p), abs=1e-9) for p in points} == points
    settings = optimiser_settings("sgd", 0.1, 0.9, 0.0, schedule, 32)
    rates = [learning_rate(settings, step, 10) for step in range(10)]
    assert all(rate > 0 for rate in rates) and max(rates) <= 0.1 + 1e-12


def test_trades_inner_maximisation_stays_in_budget_and_raises_kl(digits_model, digits_test):
    x = digits_test[0][:64]
    threat = ThreatModel(eps=0.1)
    trades = TRADES(threat, steps=5)
    x_adv = trades.maximise_kl(digits_model, digits_model.module, x, seed=0, keys=torch.arange(64))
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean = F.log_softmax(digits_model.logits(x), 1)
        kl = F.kl_div(F.log_softmax(digits_model.logits(x_adv), 1), clean, log_target=True, reduction="batchmean")
    assert float(kl) > 0.05


def test_fast_at_examples_stay_in_budget(digits_model, digits_test):
    x, y = digits_test[0][:64], digits_test[1][:64]
    fast = FastAdversarial(ThreatModel(eps=0.1))
    x_adv = fast.examples(digits_model, digits_model.module, x, y, seed=3, keys=torch.arange(64))
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(digits_model, x_adv, y) < accuracy(digits_model, x, y)


def test_distilled_student_matches_teacher(digits_arrays, digits_test):
    x, y = digits_arrays
    result = distill(tiny_mlp(0), tiny_mlp(1), x[:1200], y[:1200], temperature=20, epochs=8, optimizer="adam",
                     lr=3e-2, batch_size=64)
    teacher, student = accuracy(result.teacher, *digits_test), accuracy(result.student, *digits_test)
    assert teacher > 0.85 and abs(teacher - student) < 0.05
    assert result.teacher_record.params == {"temperature": 20.0} and result.student_record.method == "distill"
    assert result.student_record.params["teacher_sha256"] == ckpt.module_digest(result.teacher.module)
    assert result.student_record.losses[-1] < result.student_record.losses[0]


def test_train_by_name_distill_trains_a_teacher_copy(train_data, tmp_path):
    x, y = train_data
    student = tiny_mlp()
    record = train_by_name("distill", student, x, y, options={"temperature": 5.0}, epochs=1, optimizer="adam",
                           checkpoint_dir=tmp_path)
    assert record.method == "distill" and record.teacher is not None and record.teacher.method == "plain"
    assert record.teacher.params == {"temperature": 5.0}
    assert ckpt.has_checkpoint(tmp_path / "teacher") and ckpt.has_checkpoint(tmp_path / "student")


def test_objective_from_name_builds_each_method():
    threat = ThreatModel(eps=0.1)
    assert {"plain", "pgd", "trades", "fast", "distill", "ibp", "crown-ibp", "noise"} <= set(method_names())
    trades = objective_from_name("trades", threat, beta=3.0, steps=4)
    assert isinstance(trades, TRADES) and trades.params()["beta"] == 3.0 and trades.params()["steps"] == 4
    assert isinstance(objective_from_name("pgd", threat, steps=3), PGDAdversarial)
    assert isinstance(objective_from_name("fast", threat), FastAdversarial)
    assert objective_from_name("plain", threat).params() == {"temperature": 1.0}
    distilled = objective_from_name("distill", teacher=tiny_mlp(), temperature=4.0)
    assert distilled.params()["temperature"] == 4.0


def test_a_missing_method_module_fails_alone(monkeypatch):
    monkeypatch.setitem(methods_module.METHODS, "ibp", methods_module.Method("no_such_module", "X", True, "-"))
    with pytest.raises(ConfigError, match="not available"):
        objective_from_name("ibp", ThreatModel(eps=0.1))
    assert isinstance(objective_from_name("plain"), CrossEntropy)


# --- ensemble ---------------------------------------------------------------------------------


def test_ensemble_averages_probabilities_and_is_attackable(digits_model, digits_test):
    x, y = digits_test[0][:50], digits_test[1][:50]
    other = tiny_mlp(1)
    ensemble = EnsembleClassifier([digits_model, other])
    assert isinstance(ensemble, Classifier) and ensemble.access == "white" and ensemble.kind == "ensemble"
    logits = ensemble.logits(x)
    assert logits.shape == (50, 10) and ensemble.predict(x).shape == (50,)
    with torch.no_grad():
        expected = (F.softmax(digits_model.logits(x), 1) + F.softmax(other.logits(x), 1)) / 2
    torch.testing.assert_close(F.softmax(logits, 1), expected)
    by_logits = EnsembleClassifier([digits_model, other], combine="logits", weights=[3, 1])
    torch.testing.assert_close(by_logits.logits(x), 0.75 * digits_model.logits(x) + 0.25 * other.logits(x))
    assert accuracy(EnsembleClassifier([digits_model]), x, y) == accuracy(digits_model, x, y)
    result = PGD(steps=10)(ensemble, x, y, ThreatModel(eps=0.3), seed=0)
    assert float(result.success.float().mean()) > 0.5


class _LabelsOnly:
    """A label-only view of a classifier (one-hot scores)."""

    access = "labels"
    kind = "labels-only"

    def __init__(self, model: TorchClassifier) -> None:
        self.model = model
        self.num_classes, self.input_shape, self.bounds = model.num_classes, model.input_shape, model.bounds

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(self.model.predict(x), self.num_classes).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(x)


def test_ensemble_with_a_label_only_member_is_label_only(digits_model, digits_test):
    x = digits_test[0][:20]
    ensemble = EnsembleClassifier([digits_model, _LabelsOnly(tiny_mlp())])
    assert ensemble.access == "labels"
    scores = ensemble.logits(x)
    assert set(scores.unique().tolist()) <= {0.0, 1.0} and bool((scores.sum(1) == 1).all())
    with pytest.raises(InputError, match="label-only"):
        EnsembleClassifier([digits_model, _LabelsOnly(tiny_mlp())], combine="logits")


@pytest.mark.parametrize("members, options, message", [
    ([], {}, "at least one member"),
    (["digits", "wide"], {}, "num_classes"),
    (["digits", "digits"], {"weights": [1.0]}, "one weight per member"),
    (["digits", "digits"], {"weights": [0.0, 0.0]}, "not all zero"),
    (["digits"], {"combine": "median"}, "combine must be"),
    ([object()], {}, "not a bastion Classifier"),
])
def test_ensemble_bad_inputs(members, options, message, digits_model):
    wide = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 12)), (1, 8, 8), 12)
    built = [{"digits": digits_model, "wide": wide}.get(m, m) if isinstance(m, str) else m for m in members]
    with pytest.raises(InputError, match=message):
        EnsembleClassifier(built, **options)


# --- early stop -------------------------------------------------------------------------------


class Sabotage:
    """Cross-entropy for the first third of training, then gradient ascent on it (accuracy collapses)."""

    name = "sabotage"

    def loss(self, classifier, module, x, y, *, progress, seed, keys):
        module.train()
        loss = F.cross_entropy(module(classifier.normalise(x)), y)
        return loss if progress < 1 / 3 else -loss

    def params(self) -> dict[str, Any]:
        return {}


def test_early_stop_restores_the_best_epoch(digits_arrays, val_data):
    x, y = digits_arrays
    x_val, y_val = torch.from_numpy(val_data[0]), torch.from_numpy(val_data[1])
    model = tiny_mlp()
    stop = EarlyStop(ThreatModel(eps=0.05), patience=2, attack_steps=3, points=100)
    record = fit(model, x[:1200], y[:1200], Sabotage(), epochs=9, optimizer="adam", lr=1e-2, batch_size=100,
                 validation=val_data, early_stop=stop)
    assert record.stopped_early and record.epochs < 9 and record.best_epoch is not None
    assert record.best_epoch <= 3 and record.epochs == record.best_epoch + 2
    best = record.history[record.best_epoch - 1]
    assert best.val_robust == max(e.val_robust for e in record.history)
    assert record.history[-1].val_clean < best.val_clean - 0.3
    assert accuracy(model, x_val, y_val) == pytest.approx(best.val_clean)
    assert record.early_stop is not None and record.early_stop.patience == 2


def test_an_early_stopped_run_resumes_with_more_patience(digits_arrays, val_data, tmp_path):
    x, y = digits_arrays
    options = dict(epochs=9, optimizer="adam", lr=1e-2, batch_size=100, validation=val_data,
                   checkpoint_dir=tmp_path)
    first = fit(tiny_mlp(), x[:1200], y[:1200], Sabotage(),
                early_stop=EarlyStop(ThreatModel(eps=0.05), patience=2, attack_steps=3, points=100), **options)
    assert first.stopped_early and first.epochs < 9
    same = fit(tiny_mlp(), x[:1200], y[:1200], Sabotage(), resume=True,
               early_stop=EarlyStop(ThreatModel(eps=0.05), patience=2, attack_steps=3, points=100), **options)
    assert same.stopped_early and same.epochs == first.epochs  # the same patience: nothing more to do
    longer = fit(tiny_mlp(), x[:1200], y[:1200], Sabotage(), resume=True,
                 early_stop=EarlyStop(ThreatModel(eps=0.05), patience=20, attack_steps=3, points=100), **options)
    assert longer.resumed_from == first.epochs and longer.epochs == 9 and not longer.stopped_early
    with pytest.raises(InputError, match="attack_steps"):  # anything but the patience must still agree
        fit(tiny_mlp(), x[:1200], y[:1200], Sabotage(), resume=True,
            early_stop=EarlyStop(ThreatModel(eps=0.05), patience=20, attack_steps=5, points=100), **options)


# --- checkpoints and resume -------------------------------------------------------------------


class Interrupt(Exception):
    pass


def _stop_after(epoch_to_stop: int):
    def callback(epoch: int, total: int, entry: Any) -> None:
        if epoch == epoch_to_stop:
            raise Interrupt
    return callback


@pytest.mark.parametrize("optimizer, objective", [
    ("sgd", CrossEntropy()),
    ("adam", FastAdversarial(ThreatModel(eps=0.1))),
])
def test_resume_gives_bitwise_identical_weights(optimizer, objective, train_data, val_data, tmp_path):
    x, y = train_data
    options = dict(epochs=3, batch_size=64, optimizer=optimizer, schedule="cosine", weight_decay=1e-4, seed=5,
                   validation=val_data, early_stop=EarlyStop(ThreatModel(eps=0.1), patience=5, attack_steps=2,
                                                             points=50))
    straight = tiny_mlp(0)
    expected = fit(straight, x, y, objective, **options)
    interrupted = tiny_mlp(0)
    with pytest.raises(Interrupt):
        fit(interrupted, x, y, objective, checkpoint_dir=tmp_path, on_epoch=_stop_after(2), **options)
    resumed = tiny_mlp(99)  # a different initialisation: everything must come from the checkpoint
    record = fit(resumed, x, y, objective, checkpoint_dir=tmp_path, resume=True, **options)
    assert record.resumed_from == 2 and record.epochs == 3
    assert same_weights(straight.module, resumed.module)
    assert record.losses == expected.losses and record.best_epoch == expected.best_epoch
    assert [e.val_robust for e in record.history] == [e.val_robust for e in expected.history]
    finished = tiny_mlp(7)
    again = fit(finished, x, y, objective, checkpoint_dir=tmp_path, resume=True, **options)
    assert again.resumed_from == 3 and again.losses == expected.losses
    assert same_weights(straight.module, finished.module)


def test_weight_average_follows_the_ema_formula_and_becomes_the_model(train_data):
    x, y = train_data
    averaged, plain = tiny_mlp(0), tiny_mlp(0)
    history: list[dict[str, torch.Tensor]] = []
    decay = 0.9

    def remember(step: int, total: int, loss: float) -> None:
        history.append({name: t.clone() for name, t in averaged.module.state_dict().items()})

    start = {name: t.clone() for name, t in averaged.module.state_dict().items()}
    record = fit(averaged, x, y, CrossEntropy(), epochs=2, batch_size=100, seed=3, weight_average=decay,
                 on_step=remember)
    fit(plain, x, y, CrossEntropy(), epochs=2, batch_size=100, seed=3)
    assert record.weight_average == decay
    expected = start
    for step, weights in enumerate(history):
        d = min(decay, (1 + step) / (10 + step))
        expected = {name: d * expected[name] + (1 - d) * weights[name] for name in expected}
    final = averaged.module.state_dict()
    assert all(torch.allclose(final[name], expected[name], atol=1e-6) for name in final)
    # The trained weights themselves follow the same path as a run without the average.
    assert all(torch.equal(history[-1][name], plain.module.state_dict()[name]) for name in final)
    assert not same_weights(averaged.module, plain.module)


def test_weight_average_validates_resumes_and_refuses_a_changed_decay(train_data, val_data, tmp_path):
    x, y = train_data
    options = dict(epochs=3, batch_size=64, optimizer="adam", seed=5, validation=val_data, weight_average=0.95,
                   early_stop=EarlyStop(ThreatModel(eps=0.1), patience=5, attack_steps=2, points=50))
    straight = tiny_mlp(0)
    expected = fit(straight, x, y, CrossEntropy(), **options)
    interrupted = tiny_mlp(0)
    with pytest.raises(Interrupt):
        fit(interrupted, x, y, CrossEntropy(), checkpoint_dir=tmp_path, on_epoch=_stop_after(2), **options)
    assert any(name.startswith("average.") for name in ckpt.load_checkpoint(
        tmp_path, json.loads((tmp_path / "checkpoint.json").read_text())["config"]).tensors)
    resumed = tiny_mlp(99)
    record = fit(resumed, x, y, CrossEntropy(), checkpoint_dir=tmp_path, resume=True, **options)
    assert record.resumed_from == 2 and same_weights(straight.module, resumed.module)
    assert [e.val_clean for e in record.history] == [e.val_clean for e in expected.history]
    with pytest.raises(InputError, match="weight_average"):
        fit(tiny_mlp(0), x, y, CrossEntropy(), checkpoint_dir=tmp_path, resume=True,
            **{**options, "weight_average": 0.99})


def test_weight_average_refuses_tensors_of_another_model():
    average = WeightAverage(tiny_mlp().module, 0.99)
    other = {name: t for name, t in average.tensors.items() if not name.endswith("bias")}
    with pytest.raises(InputError, match="weight average does not match the model"):
        average.load(other)


def test_checkpoint_files_are_safetensors_and_json_only(train_data, tmp_path):
    x, y = train_data
    fit(tiny_mlp(), x, y, CrossEntropy(), epochs=2, optimizer="adam", checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "epoch-0002.safetensors"]
    document = json.loads((tmp_path / "checkpoint.json").read_text())
    assert document["format"] == ckpt.FORMAT and document["loop"]["epoch"] == 2
    assert document["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]


def test_a_crash_while_writing_keeps_the_last_good_checkpoint(train_data, tmp_path, monkeypatch):
    x, y = train_data
    options = dict(epochs=2, batch_size=100, optimizer="adam", seed=1)
    straight = tiny_mlp()
    fit(straight, x, y, CrossEntropy(), **options)
    real_replace = os.replace
    calls = []

    def crash_on_second_json(source, target):
        calls.append(Path(target).name)
        if Path(target).name == ckpt.STATE_FILE and calls.count(ckpt.STATE_FILE) == 2:
            raise OSError("disk full")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_second_json)
    with pytest.raises(OSError, match="disk full"):
        fit(tiny_mlp(), x, y, CrossEntropy(), checkpoint_dir=tmp_path, **options)
    monkeypatch.setattr(os, "replace", real_replace)
    resumed = tiny_mlp(3)
    record = fit(resumed, x, y, CrossEntropy(), checkpoint_dir=tmp_path, resume=True, **options)
    assert record.resumed_from == 1 and same_weights(straight.module, resumed.module)


def test_foreign_checkpoints_are_refused(train_data, tmp_path):
    x, y = train_data
    options = dict(epochs=2, batch_size=100, optimizer="adam", checkpoint_dir=tmp_path)
    fit(tiny_mlp(), x, y, CrossEntropy(), **options)
    with pytest.raises(InputError, match="resume=True"):
        fit(tiny_mlp(), x, y, CrossEntropy(), **options)
    with pytest.raises(InputError, match=r"different run \(method: checkpoint \"plain\", now \"trades\""):
        fit(tiny_mlp(), x, y, TRADES(ThreatModel(eps=0.1)), resume=True, **options)
    with pytest.raises(InputError, match="optimiser.lr"):
        fit(tiny_mlp(), x, y, CrossEntropy(), resume=True, lr=0.5, **options)
    with pytest.raises(InputError, match="data.sha256"):
        fit(tiny_mlp(), x[::-1].copy(), y[::-1].copy(), CrossEntropy(), resume=True, **options)
    wider = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (1, 8, 8), 10)
    with pytest.raises(InputError, match="model.state"):
        fit(wider, x, y, CrossEntropy(), resume=True, **options)


@pytest.mark.parametrize("damage, message", [
    ("truncate tensors", "does not match the SHA-256"),
    ("garbage json", "not readable JSON"),
    ("other json", "not a bastion training checkpoint"),
    ("delete tensors", "tensor file cannot be read"),
])
def test_corrupt_checkpoints_are_refused(damage, message, train_data, tmp_path):
    x, y = train_data
    options = dict(epochs=1, batch_size=100, optimizer="adam", checkpoint_dir=tmp_path)
    fit(tiny_mlp(), x, y, CrossEntropy(), **options)
    tensors, state = tmp_path / "epoch-0001.safetensors", tmp_path / "checkpoint.json"
    if damage == "truncate tensors":
        tensors.write_bytes(tensors.read_bytes()[:100])
    elif damage == "garbage json":
        state.write_text("{not json")
    elif damage == "other json":
        state.write_text(json.dumps({"format": "something else"}))
    else:
        tensors.unlink()
    with pytest.raises(InputError, match=message):
        fit(tiny_mlp(), x, y, CrossEntropy(), resume=True, **options)


def test_resume_without_a_checkpoint_starts_afresh(train_data, tmp_path):
    x, y = train_data
    record = fit(tiny_mlp(), x, y, CrossEntropy(), epochs=1, optimizer="adam", checkpoint_dir=tmp_path / "new",
                 resume=True)
    assert record.resumed_from is None and ckpt.has_checkpoint(tmp_path / "new")


# --- the original entry point and the CLI -----------------------------------------------------


def test_train_classifier_keeps_its_contract(train_data):
    x, y = train_data
    seen = []
    record = train_classifier(tiny_mlp(), x, y, epochs=2, on_epoch=lambda e, n, loss: seen.append((e, n, loss)))
    assert record.epochs == 2 and len(record.losses) == 2 and 0 <= record.train_accuracy <= 1
    assert [(e, n) for e, n, _ in seen] == [(1, 2), (2, 2)] and seen[-1][2] == record.losses[-1]
    assert record.optimiser.optimizer == "adam" and record.optimiser.batch_size == 64
    adversarial = train_classifier(tiny_mlp(), x[:100], y[:100], epochs=1, adversarial=ThreatModel(eps=0.1),
                                   attack_steps=2)
    assert adversarial.method == "pgd" and adversarial.params["steps"] == 2


def test_cli_train_checkpoints_and_resumes(tmp_path):
    from bastion.cli.main import app

    runner = CliRunner()
    args = ["train", "--model", "bastion.models.zoo:digits_cnn", "--data", "digits:train", "--limit", "200",
            "--epochs", "2", "--out", str(tmp_path / "m.safetensors"), "--checkpoint-dir", str(tmp_path / "ck")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and "resumed after epoch 2" in resumed.output


# --- bad inputs -------------------------------------------------------------------------------


def _wrong(**changes: Any) -> dict[str, Any]:
    return {"epochs": 1, **changes}


@pytest.mark.parametrize("changes, message", [
    (_wrong(epochs=0), "epochs must be an integer >= 1, got 0"),
    (_wrong(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (_wrong(y=np.zeros(5, dtype=np.int64)), "equal length"),
    (_wrong(x=np.zeros((10, 64), dtype=np.float32), y=np.zeros(10, dtype=np.int64)), "the model expects"),
    (_wrong(x=np.full((10, 1, 8, 8), 2.0, dtype=np.float32), y=np.zeros(10, dtype=np.int64)), "outside"),
    (_wrong(y=np.full(600, 10)), "labels range over"),
    (_wrong(y=np.zeros(600, dtype=np.float32)), "integer class indices"),
    (_wrong(validation=(np.zeros((5, 8, 8), dtype=np.float32), np.zeros(5, dtype=np.int64))), "validation data"),
    (_wrong(validation=(np.zeros((5, 1, 8, 8), dtype=np.float32),)), "pair"),
    (_wrong(optimizer="rmsprop"), "optimizer must be one of"),
    (_wrong(schedule="linear"), "schedule must be one of"),
    (_wrong(lr=-1.0), "lr must be"),
    (_wrong(momentum=1.0), "momentum"),
    (_wrong(early_stop=EarlyStop(ThreatModel(eps=0.1))), "needs validation"),
    (_wrong(resume=True), "needs the checkpoint_dir"),
    (_wrong(objective=object()), "must implement Objective"),
    (_wrong(objective=PGDAdversarial(ThreatModel(eps=0.1, bounds=(-1, 1)))), "bounds"),
    (_wrong(weight_average=1.0), "weight-average decay must be a number in"),
    (_wrong(weight_average=0), "weight-average decay"),
    (_wrong(weight_average="0.99"), "weight-average decay"),
    (_wrong(weight_average=math.nan), "weight-average decay"),
])
def test_fit_refuses_bad_inputs(changes, message, train_data):
    x, y = train_data
    arguments: dict[str, Any] = {"x": x, "y": y, "objective": CrossEntropy(), **changes}
    with pytest.raises(InputError, match=message):
        fit(tiny_mlp(), arguments.pop("x"), arguments.pop("y"), arguments.pop("objective"), **arguments)


@pytest.mark.parametrize("build, error, message", [
    (lambda: objective_from_name("adversarial"), ConfigError, "unknown training method 'adversarial'"),
    (lambda: objective_from_name("pgd"), InputError, "threat model"),
    (lambda: objective_from_name("pgd", ThreatModel(eps=0.1), betta=2), ConfigError, "no option 'betta'"),
    (lambda: objective_from_name("distill"), InputError, "teacher"),
    (lambda: PGDAdversarial(ThreatModel(eps=0.0)), InputError, "eps > 0"),
    (lambda: PGDAdversarial(ThreatModel(eps=0.1, targeted=True)), InputError, "untargeted"),
    (lambda: PGDAdversarial(ThreatModel(eps=0.1), steps=0), InputError, "steps must be"),
    (lambda: TRADES(ThreatModel(eps=0.1), beta=-1.0), InputError, "beta"),
    (lambda: FastAdversarial(ThreatModel(eps=0.1), rel_step_size=math.nan), InputError, "rel_step_size"),
    (lambda: CrossEntropy(temperature=0.0), InputError, "temperature"),
    (lambda: EarlyStop(ThreatModel(eps=0.1), patience=0), InputError, "patience"),
    (lambda: EarlyStop(ThreatModel(eps=0.1, targeted=True)), InputError, "untargeted"),
])
def test_objectives_refuse_bad_settings(build, error, message):
    with pytest.raises(error, match=message):
        build()
