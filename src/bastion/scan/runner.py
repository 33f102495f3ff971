"""``run_scan``: a cascade per eps over a dataset, turned into an evidence record."""

from __future__ import annotations

import importlib.metadata
import math
import numbers
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch

from bastion import __version__
from bastion.attacks.base import EvasionAttack, check_batch
from bastion.core.errors import InputError
from bastion.core.ids import array_digest, keys_from_ids
from bastion.core.records import (
    ArtifactRef,
    ClassRow,
    DatasetRef,
    EpsResult,
    SampleRecord,
    ScanConfig,
    ScanRecord,
)
from bastion.core.threat import ACCESS_ORDER, Access, Norm, ThreatModel, weakest_access
from bastion.data.sources import Dataset
from bastion.models.base import Classifier
from bastion.models.loading import LoadedModel
from bastion.scan.cascade import CascadeResult, random_targets
from bastion.scan.engine import CascadeJob, LocalEngine, ScanEngine
from bastion.scan.outcome import ExampleGrid, ScanOutcome
from bastion.scan.progress import ProgressCallback, no_progress
from bastion.scan.sanity import blackbox_beats_whitebox, chance_level_flags, eps_curve_flags, probe_model
from bastion.scan.suites import build_attacks

ATLAS_IDS = ["AML.T0043", "AML.T0015"]
OWASP_IDS = ["ML01:2023"]
_VERSIONED = ("torch", "numpy", "pydantic", "scikit-learn", "onnxruntime", "skops", "safetensors")


@dataclass(frozen=True)
class ScanSettings:
    """What to run, checked when it is built (an ``InputError`` says what to fix).

    Attributes:
        eps: the perturbation budgets, a list of finite numbers ``>= 0``; the first is the headline that
            ``fail_under`` gates. A single number means a one-element list (``eps=0.1`` is ``eps=[0.1]``).
        suite: the named suite to run (``quick``, ``standard``, ``full``) when ``attacks`` is ``None``.
        attacks: registered attack names that replace the suite, a non-empty list such as ``["fgsm", "pgd"]``;
            ``None`` (the default) runs the suite's attacks. A bare string is refused, not split into letters.
        norm: ``"linf"`` or ``"l2"``.
        targeted: attack random target classes instead of any wrong class.
        access: ``"white"``, ``"scores"`` or ``"labels"``: limits the attacker below what the model offers;
            ``None``: what the model offers.
        seed: the scan's seed, an integer ``>= 0``.
        batch_size: samples per attack batch, ``>= 1``.
        fail_under: the headline robust accuracy in ``[0, 1]`` under which the scan fails; ``None``: never.
        examples: how many broken samples each eps shows in the report, ``>= 0``.
    """

    eps: list[float]
    suite: str = "standard"
    attacks: list[str] | None = None
    norm: Norm = "linf"
    targeted: bool = False
    access: Access | None = None
    seed: int = 0
    batch_size: int = 128
    fail_under: float | None = None
    examples: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _eps_list(self.eps))
        object.__setattr__(self, "attacks", _attack_names(self.attacks))
        _require_choice("norm", self.norm, get_args(Norm))
        if self.access is not None:
            _require_choice("access", self.access, ACCESS_ORDER, none_means="what the model offers")
        _require_count("seed", self.seed, minimum=0)
        _require_count("batch size", self.batch_size, minimum=1)
        _require_count("examples", self.examples, minimum=0)
        if self.fail_under is not None and not (_is_number(self.fail_under) and 0 <= self.fail_under <= 1):
            raise InputError(f"--fail-under is a robust accuracy in [0, 1], got {self.fail_under!r}")


def _is_number(value: object) -> bool:
    """A real number, not a bool (``True`` would read as 1) nor a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _eps_list(eps: object) -> list[float]:
    """``eps`` as a non-empty list of finite floats ``>= 0``; a single number becomes a one-element list."""
    if isinstance(eps, (str, bytes)):
        raise InputError(f"eps is a list of numbers, e.g. eps=[0.1] or eps=[0.05, 0.1]; got the string {eps!r}")
    values = [eps] if _is_number(eps) else eps
    if not isinstance(values, Iterable):
        raise InputError(f"eps is a list of numbers, e.g. eps=[0.1]; got {type(eps).__name__}")
    values = list(values)
    if not values:
        raise InputError("give at least one eps, e.g. eps=[0.1]")
    for value in values:
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise InputError(f"eps must be a finite number >= 0, got {value!r}")
    repeated = next((value for index, value in enumerate(values) if value in values[:index]), None)
    if repeated is not None:
        raise InputError(f"eps {repeated:g} is given twice; give each budget once")
    return [float(value) for value in values]


def _attack_names(attacks: object) -> list[str] | None:
    """``attacks`` as a non-empty list of names, or ``None`` (the suite's attacks)."""
    if attacks is None:
        return None
    if isinstance(attacks, str) or not isinstance(attacks, Iterable):
        raise InputError(f"attacks is a list of attack names, e.g. attacks=['fgsm'] or ['fgsm', 'pgd'] (None: the "
                         f"suite's attacks); got {attacks!r}")
    names = list(attacks)
    if not names:
        raise InputError("attacks=[] names no attack: give names, e.g. attacks=['fgsm'], or leave attacks=None to "
                         "run the suite's attacks")
    bad = next((name for name in names if not isinstance(name, str) or not name), None)
    if bad is not None:
        raise InputError(f"attacks holds attack names (see 'bastion attacks'); got {bad!r}")
    return names


def _require_choice(name: str, value: object, choices: tuple[str, ...], *, none_means: str | None = None) -> None:
    """Refuse ``value`` unless it is one of ``choices``, naming them (and what ``None`` means, if it is allowed)."""
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        also = f" (or None: {none_means})" if none_means else ""
        raise InputError(f"{name} must be one of {valid}{also}; got {value!r}")


def _require_count(name: str, value: object, *, minimum: int) -> None:
    """Refuse ``value`` unless it is an integer ``>= minimum``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be >= {minimum} (a whole number), got {value!r}")


def run_scan(
    loaded: LoadedModel,
    dataset: Dataset,
    settings: ScanSettings,
    *,
    progress: ProgressCallback = no_progress,
    engine: ScanEngine | None = None,
) -> ScanOutcome:
    """Scan ``loaded.classifier`` on ``dataset`` at every eps in ``settings``; returns record and examples.

    ``engine`` runs each eps's cascade (default :class:`~bastion.scan.engine.LocalEngine`: in this process);
    a :class:`~bastion.scan.engine.RayEngine` shards it over a Ray cluster, for the same record.

    Raises:
        TypeError: an argument of another type than ``LoadedModel``, ``Dataset``, ``ScanSettings`` (the message
            says how to make each).
        InputError: an empty dataset, or a scan in which no attack can run.
    """
    _check_scan_arguments(loaded, dataset, settings)
    engine = engine or LocalEngine()
    model = loaded.classifier
    access = weakest_access(model.access, settings.access or model.access)
    threats = [ThreatModel(norm=settings.norm, eps=eps, bounds=model.bounds, targeted=settings.targeted,
                           access=access) for eps in settings.eps]
    x = torch.as_tensor(dataset.x, dtype=torch.float32)
    y = torch.as_tensor(dataset.y, dtype=torch.int64)
    if not len(x):
        raise InputError("the dataset is empty")
    ids = dataset.sample_ids
    keys = keys_from_ids(ids)
    targets = random_targets(y, keys, settings.seed, model.num_classes) if settings.targeted else None
    check_batch(model, x, y, threats[0], targets)
    attacks = build_attacks(settings.suite, settings.attacks, input_shape=tuple(model.input_shape))
    _require_a_runnable_attack(attacks, model, threats[0])
    results: list[EpsResult] = []
    grids: list[ExampleGrid] = []
    for threat in threats:
        started = time.perf_counter()
        job = CascadeJob(threat=threat, attacks=attacks, seed=settings.seed, batch_size=settings.batch_size)
        cascade = engine.run(model, loaded.sha256, x, y, keys, ids, job, targets=targets,
                             progress=lambda task, done, total, e=threat.eps: progress(
                                 f"eps={e:g} {task}", done, total))
        results.append(_eps_result(threat.eps, cascade, ids, dataset.class_names,
                                   time.perf_counter() - started))
        results[-1].flags.extend(blackbox_beats_whitebox(results[-1].attacks))
        grids.append(_examples(threat.eps, cascade, x, ids, settings.examples))
    results[0].flags[:0] = (probe_model(model, x, y) + eps_curve_flags(results)
                            + chance_level_flags(results[0].clean_accuracy, model.num_classes))
    record = ScanRecord(
        bastion_version=__version__,
        library_versions=library_versions(),
        config=_config(settings, attacks, model.bounds, access),
        model=ArtifactRef(description=loaded.description, sha256=loaded.sha256, kind=loaded.kind,
                          access=model.access),
        data=DatasetRef(description=dataset.description, count=len(x),
                        sha256=array_digest(dataset.x, dataset.y), input_shape=list(model.input_shape),
                        num_classes=model.num_classes),
        results=results,
        atlas_ids=ATLAS_IDS,
        owasp_ids=OWASP_IDS,
        endpoint=_endpoint(model),
    )
    return ScanOutcome(record=record, class_names=dataset.class_names, examples=grids)


#: What run_scan takes, for a TypeError when it is given something else.
RUN_SCAN_ARGUMENTS = (
    "run_scan takes a LoadedModel from bastion.models.loading.load_classifier (or, for a model in memory, "
    "LoadedModel(TorchClassifier(module, input_shape, num_classes), description, None, 'torch')), a Dataset "
    "from bastion.data.load_dataset or Dataset(x=..., y=...), and ScanSettings(eps=[...])"
)


def _check_scan_arguments(loaded: object, dataset: object, settings: object) -> None:
    """A ``TypeError`` saying what to pass when an argument of :func:`run_scan` is of the wrong type."""
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"{RUN_SCAN_ARGUMENTS}; got {_type_name(loaded)} as the model")
    if not isinstance(loaded.classifier, Classifier):
        raise TypeError(f"{RUN_SCAN_ARGUMENTS}; got a LoadedModel around {_type_name(loaded.classifier)}, which is "
                        "not a bastion Classifier (wrap a torch module in TorchClassifier)")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{RUN_SCAN_ARGUMENTS}; got {_type_name(dataset)} as the dataset")
    if not isinstance(settings, ScanSettings):
        raise TypeError(f"{RUN_SCAN_ARGUMENTS}; got {_type_name(settings)} as the settings")


def _type_name(value: object) -> str:
    """``module.Class`` of ``value`` (``Class`` alone for a built-in type), for messages."""
    module = type(value).__module__
    return type(value).__qualname__ if module == "builtins" else f"{module}.{type(value).__qualname__}"


def _endpoint(model: Classifier) -> dict | None:
    """What the record says of a live endpoint (``None`` for a local model; httpx is imported only for one)."""
    if model.kind != "remote":
        return None
    from bastion.models.remote import endpoint_facts

    return endpoint_facts(model)


def _require_a_runnable_attack(attacks: list[EvasionAttack], model: Classifier, threat: ThreatModel) -> None:
    """A scan in which no attack can run would report clean accuracy as robust accuracy: refuse it."""
    reasons = [attack.supports(model, threat) for attack in attacks]
    if all(reason is not None for reason in reasons):
        raise InputError("no attack of this scan can run, so it would measure nothing: "
                         + "; ".join(r for r in reasons if r)
                         + ". Choose attacks that fit (see 'bastion attacks') or another --norm/--access")


def _config(settings: ScanSettings, attacks: list[EvasionAttack], bounds: tuple[float, float],
            access: Access) -> ScanConfig:
    return ScanConfig(
        suite=settings.suite if not settings.attacks else "custom", attacks=[a.name for a in attacks],
        norm=settings.norm, eps=list(settings.eps), bounds=bounds, targeted=settings.targeted,
        access=access, seed=settings.seed, batch_size=settings.batch_size, fail_under=settings.fail_under,
    )


def _eps_result(eps: float, cascade: CascadeResult, ids: list[str], class_names: list[str],
                seconds: float) -> EpsResult:
    labels = cascade.labels.tolist()
    clean = cascade.clean_predictions.tolist()
    adversarial = cascade.adversarial_predictions.tolist()
    robust = cascade.robust.tolist()
    distances = cascade.distances.tolist()
    queries = cascade.queries.tolist()
    samples = [
        SampleRecord(index=i, sample_id=ids[i], label=labels[i], clean_prediction=clean[i],
                     adversarial_prediction=adversarial[i], robust=robust[i], broken_by=cascade.broken_by[i],
                     distance=distances[i] if cascade.broken_by[i] else None, queries=queries[i])
        for i in range(len(ids))
    ]
    return EpsResult(eps=eps, clean_accuracy=cascade.clean_accuracy, robust_accuracy=cascade.robust_accuracy,
                     attacks=cascade.attacks, per_class=_per_class(cascade, class_names), flags=[],
                     samples=samples, seconds=seconds)


def _per_class(cascade: CascadeResult, class_names: list[str]) -> list[ClassRow]:
    rows = []
    correct = cascade.clean_predictions == cascade.labels
    for label in sorted(set(cascade.labels.tolist())):
        mask = cascade.labels == label
        name = class_names[label] if label < len(class_names) else str(label)
        rows.append(ClassRow(label=label, name=name, count=int(mask.sum()),
                             clean_accuracy=float(correct[mask].float().mean()),
                             robust_accuracy=float(cascade.robust[mask].float().mean())))
    return rows


def _examples(eps: float, cascade: CascadeResult, x: torch.Tensor, ids: list[str], count: int) -> ExampleGrid:
    """The first ``count`` broken samples (or the first samples when nothing broke)."""
    broken = [i for i, name in enumerate(cascade.broken_by) if name is not None][:count]
    chosen = broken or list(range(min(count, len(ids))))
    index = torch.tensor(chosen, dtype=torch.int64)
    return ExampleGrid(
        eps=eps, sample_ids=[ids[i] for i in chosen], clean=x[index].cpu().numpy().astype(np.float32),
        adversarial=cascade.x_worst[index].cpu().numpy().astype(np.float32),
        labels=cascade.labels[index].cpu().numpy(), clean_predictions=cascade.clean_predictions[index].cpu().numpy(),
        adversarial_predictions=cascade.adversarial_predictions[index].cpu().numpy(),
        broken_by=[cascade.broken_by[i] or "" for i in chosen],
    )


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on (plus ``extra`` ones), for evidence records."""
    versions = {"python": platform.python_version()}
    for name in (*_VERSIONED, *extra):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
