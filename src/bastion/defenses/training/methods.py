"""Training methods by name, for the command line: ``objective_from_name`` and ``train_by_name``.

:data:`METHODS` maps each name (``plain``, ``pgd``, ``trades``, ``fast``, ``distill``, ``ibp``,
``crown-ibp``, ``noise``) to the module and class of its objective and whether it needs a threat
model. Objectives are imported when asked for, so a method whose module is missing fails alone,
with a message, and the others work.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from bastion.core.errors import ConfigError, InputError
from bastion.core.threat import ThreatModel
from bastion.defenses.training.data import ArrayLike
from bastion.defenses.training.objective import Objective
from bastion.defenses.training.record import TrainingRecord
from bastion.models.torch_adapter import TorchClassifier

_PACKAGE = "bastion.defenses.training"


@dataclass(frozen=True)
class Method:
    """Where a method's objective lives and how it is built (``threat`` first when ``needs_threat``)."""

    module: str
    attribute: str
    needs_threat: bool
    summary: str


METHODS: dict[str, Method] = {
    "plain": Method("plain", "CrossEntropy", False, "cross-entropy on clean inputs"),
    "pgd": Method("pgd_at", "PGDAdversarial", True, "PGD adversarial training (Madry et al. 2018)"),
    "trades": Method("trades", "TRADES", True, "TRADES (Zhang et al. 2019)"),
    "fast": Method("fast_at", "FastAdversarial", True, "FGSM with random start (Wong et al. 2020)"),
    "distill": Method("distillation", "Distillation", False, "defensive distillation (Papernot et al. 2016)"),
    "ibp": Method("certified", "IBPObjective", True, "interval bound propagation training (Gowal et al. 2018)"),
    "crown-ibp": Method("certified", "CrownIBPObjective", True, "CROWN-IBP training (Zhang et al. 2020)"),
    "noise": Method("noise", "GaussianAugmentation", False, "Gaussian noise augmentation (Cohen et al. 2019)"),
}


def method_names() -> list[str]:
    """The names :func:`objective_from_name` accepts."""
    return list(METHODS)


def objective_from_name(name: str, threat: ThreatModel | None = None, **options: Any) -> Objective:
    """Build the objective of method ``name`` (see the module's table).

    Args:
        name: ``plain``, ``pgd``, ``trades``, ``fast``, ``distill``, ``ibp``, ``crown-ibp`` or ``noise``.
        threat: the budget trained against; required by the adversarial and certified methods and
            ignored by the others.
        options: the objective's keyword arguments (``steps``, ``beta``, ``temperature``,
            ``teacher``, ``sigma``, ...). ``distill`` needs ``teacher=`` a trained classifier; to
            train teacher and student in one go use :func:`train_by_name` or :func:`distill`.

    Raises:
        ConfigError: an unknown method or option (the message lists the known ones).
        InputError: a missing threat model or teacher, or a bad option value.
    """
    method = METHODS.get(name)
    if method is None:
        raise ConfigError(f"unknown training method {name!r}; choose one of {', '.join(METHODS)}")
    if name == "distill" and "teacher" not in options:
        raise InputError("distill needs teacher= a classifier trained at the same temperature; train_by_name"
                         "('distill', ...) or distill(...) trains the teacher first")
    factory = _factory(name, method)
    _check_options(name, factory, options, method.needs_threat)
    if method.needs_threat:
        if threat is None:
            raise InputError(f"method {name!r} trains against a threat model; pass "
                             "threat=ThreatModel(norm=..., eps=...)")
        return factory(threat, **options)
    return factory(**options)


def _factory(name: str, method: Method) -> Any:
    try:
        module = importlib.import_module(f"{_PACKAGE}.{method.module}")
    except ImportError as exc:
        raise ConfigError(f"training method {name!r} is not available in this installation ({exc})") from exc
    factory = getattr(module, method.attribute, None)
    if factory is None:
        raise ConfigError(f"training method {name!r} is not available: {module.__name__} has no {method.attribute}")
    return factory


def method_options(name: str) -> list[str] | None:
    """The option names method ``name``'s objective takes (``None``: any keyword). Raises ``ConfigError`` for an
    unknown method."""
    method = METHODS.get(name)
    if method is None:
        raise ConfigError(f"unknown training method {name!r}; choose one of {', '.join(METHODS)}")
    return _option_names(_factory(name, method), method.needs_threat)


def _option_names(factory: Any, needs_threat: bool) -> list[str] | None:
    parameters = list(inspect.signature(factory).parameters.values())
    if needs_threat:
        parameters = parameters[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                     inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def _check_options(name: str, factory: Any, options: dict[str, Any], needs_threat: bool) -> None:
    """Refuse options the objective does not take, naming the ones it does."""
    known = _option_names(factory, needs_threat)
    if known is None:
        return
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"method {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(known) or 'none'}")


def train_by_name(
    name: str,
    classifier: TorchClassifier,
    x: ArrayLike,
    y: ArrayLike,
    *,
    threat: ThreatModel | None = None,
    options: dict[str, Any] | None = None,
    **fit_options: Any,
) -> TrainingRecord:
    """Train ``classifier`` in place by method ``name``; what ``bastion harden --method`` runs.

    For ``distill`` without a ``teacher`` option, a copy of ``classifier`` is first trained as the
    teacher at ``temperature`` (without early stopping; it checkpoints under ``teacher/`` of
    ``checkpoint_dir``, the student under ``student/``) and the returned record is the student's,
    with the teacher's record in its ``teacher`` field.

    Args:
        name, threat, options: as for :func:`objective_from_name`.
        fit_options: :func:`~bastion.defenses.training.fit` keyword arguments (``epochs`` required).
    """
    from bastion.defenses.training.distillation import DEFAULT_TEMPERATURE, distill
    from bastion.defenses.training.loop import fit

    options = dict(options or {})
    if name == "distill" and "teacher" not in options:
        _check_options(name, _factory(name, METHODS[name]), options | {"teacher": None}, False)
        temperature = options.get("temperature", DEFAULT_TEMPERATURE)
        checkpoint_dir = fit_options.pop("checkpoint_dir", None)
        result = distill(copy.deepcopy(classifier), classifier, x, y, temperature=temperature,
                         teacher_options={"early_stop": None}, checkpoint_dir=checkpoint_dir, **fit_options)
        return result.student_record.model_copy(update={"teacher": result.teacher_record})
    objective = objective_from_name(name, threat, **options)
    return fit(classifier, x, y, objective, **fit_options)
