"""The evasion attack contract and the engine that distrusts every attack.

An attack is called as ``attack(model, x, y, threat, seed=..., keys=..., targets=...)`` and returns
an :class:`~bastion.core.records.AttackResult`. Subclasses implement :meth:`EvasionAttack.perturb`;
``__call__`` checks inputs and capabilities first and, afterwards, projects the proposed inputs onto
the budget and bounds and recomputes success with its own forward pass.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from bastion.attacks.norms import distance, per_sample, project
from bastion.core.errors import CapabilityError, ConfigError, InputError
from bastion.core.ids import sample_keys
from bastion.core.records import AttackResult
from bastion.core.registry import Registry
from bastion.core.threat import Access, Norm, ThreatModel, access_allows
from bastion.models.base import Classifier

#: Every evasion attack registers here under its short name (``pgd``, ``apgd-ce``, ...).
ATTACKS: Registry[EvasionAttack] = Registry("attack")


class EvasionAttack(ABC):
    """Base class. Subclasses set ``name``, ``access`` (what they need) and ``norms`` (what they support).

    Parameters go in ``__init__`` and are reported by :meth:`params`.
    """

    name: ClassVar[str]
    access: ClassVar[Access]
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2")

    def params(self) -> dict[str, Any]:
        """The attack's configuration, for the evidence record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def supports(self, model: Classifier, threat: ThreatModel) -> str | None:
        """``None`` when the attack can run here, otherwise the reason it cannot."""
        if threat.norm not in self.norms:
            return f"{self.name} supports {', '.join(self.norms)}, not {threat.norm}"
        if not access_allows(model.access, self.access):
            return f"{self.name} needs {self.access} access; the model offers only {model.access}"
        if not access_allows(threat.access, self.access):
            return f"{self.name} needs {self.access} access; the threat model allows only {threat.access}"
        return None

    def __call__(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        seed: int = 0,
        keys: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> AttackResult:
        """Attack ``x`` ``(N, *input_shape)`` with labels ``y`` ``(N,)``; returns a verified result.

        ``model`` is a :class:`~bastion.models.base.Classifier` (a ``LoadedModel`` from ``load_classifier`` is
        taken as its ``classifier``); ``x``, ``y`` and ``targets`` may be NumPy arrays or tensors. ``keys``
        (``(N,)`` int64) make the randomness of each sample independent of its batch; by default they are
        computed from the samples' content. ``targets`` ``(N,)`` are required when ``threat.targeted``.

        Raises:
            TypeError: ``model``, ``threat`` or ``seed`` of the wrong kind.
            CapabilityError: the attack cannot run on this model or threat model (see :meth:`supports`).
            InputError: inputs, labels, targets or keys that do not fit the model (the message says what to fix).
        """
        from bastion.models.loading import LoadedModel

        if isinstance(model, LoadedModel):
            model = model.classifier
        _check_kinds(model, threat, seed)
        x, y = _tensor(x, "x"), _tensor(y, "y")
        targets = None if targets is None else _tensor(targets, "targets")
        reason = self.supports(model, threat)
        if reason is not None:
            raise CapabilityError(reason)
        check_batch(model, x, y, threat, targets)
        if keys is None:
            keys = sample_keys(x, y)
        elif tuple(keys.shape) != (len(x),):
            raise InputError(f"keys must have shape ({len(x)},), one per sample; got {tuple(keys.shape)}")
        keys = keys.to(x.device)
        x = x.detach()
        if threat.eps == 0 or len(x) == 0:
            proposed = AttackResult(x, torch.zeros_like(y, dtype=torch.bool), x.new_zeros(len(x)),
                                    torch.zeros(len(x), dtype=torch.int64))
        else:
            proposed = self.perturb(model, x, y, threat, seed=seed, keys=keys, targets=targets)
        return verify(model, x, y, proposed, threat, targets)

    @abstractmethod
    def perturb(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        seed: int,
        keys: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> AttackResult:
        """Propose adversarial inputs. Inputs are already checked; the result will be verified."""


def _check_kinds(model: object, threat: object, seed: object) -> None:
    if not callable(getattr(model, "logits", None)):
        raise TypeError(f"model must be a bastion Classifier (from bastion.models.load_classifier, or "
                        f"TorchClassifier(module, input_shape, num_classes)), got {type(model).__name__}")
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"threat must be a ThreatModel, e.g. ThreatModel(norm='linf', eps=0.1) from bastion.core; "
                        f"got {type(threat).__name__}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")


def _tensor(values: object, name: str) -> torch.Tensor:
    """``values`` as a tensor: a NumPy array (or a list of numbers) is converted, keeping its dtype."""
    if isinstance(values, torch.Tensor):
        return values
    try:
        return torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError, RuntimeError) as error:
        raise InputError(f"{name} must be a tensor or an array of numbers ({error})") from None


def shape_hint(given: tuple[int, ...], expected: tuple[int, ...]) -> str:
    """How to fix a per-sample shape that lacks or has an extra channel axis of one (``""`` otherwise)."""
    reshape = f"x.reshape(len(x), {', '.join(map(str, expected))})"
    if expected[:1] == (1,) and given == expected[1:]:
        return f": add the channel axis, e.g. x[:, None] or {reshape}"
    if given[:1] == (1,) and given[1:] == expected:
        return ": drop the channel axis, e.g. x[:, 0]"
    if math.prod(given) == math.prod(expected):
        return f": the values are all there; reshape them, e.g. {reshape}"
    return ""


def check_batch(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    targets: torch.Tensor | None = None,
) -> None:
    """Raise :class:`InputError` naming the problem when a batch does not fit the model or threat."""
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise InputError(
            f"inputs have per-sample shape {tuple(x.shape[1:])}; the model expects {tuple(model.input_shape)}"
            + shape_hint(tuple(x.shape[1:]), tuple(model.input_shape))
        )
    if not x.is_floating_point():
        raise InputError(f"inputs must be floating point, got {x.dtype}")
    if y.ndim != 1 or len(y) != len(x):
        raise InputError(f"labels must have shape ({len(x)},), got {tuple(y.shape)}")
    if len(x) and not bool(torch.isfinite(x).all()):
        raise InputError("inputs contain NaN or infinite values")
    low, high = threat.bounds
    if len(x) and (float(x.min()) < low - 1e-6 or float(x.max()) > high + 1e-6):
        raise InputError(
            f"inputs range over [{float(x.min()):.4g}, {float(x.max()):.4g}], outside the bounds "
            f"[{low}, {high}]; rescale the data or set the bounds"
        )
    for name, labels in (("labels", y), ("targets", targets)):
        if labels is None or not len(labels):
            continue
        if labels.dtype != torch.int64:
            raise InputError(f"{name} must be int64 class indices, got {labels.dtype}")
        if int(labels.min()) < 0 or int(labels.max()) >= model.num_classes:
            raise InputError(
                f"{name} range over [{int(labels.min())}, {int(labels.max())}]; "
                f"the model has {model.num_classes} classes (0..{model.num_classes - 1})"
            )
    if threat.targeted:
        if targets is None or targets.shape != y.shape:
            raise InputError("a targeted threat model needs targets of the same shape as the labels")
        if bool((targets == y).any()):
            raise InputError("targets must differ from the true labels")
    elif targets is not None:
        raise ConfigError("targets were given but the threat model is not targeted")


def goal_reached(
    predictions: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """``(N,)`` bool: the target class is predicted (targeted) or the true class is not (untargeted)."""
    return predictions == targets if targets is not None else predictions != y


def verify(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    proposed: AttackResult,
    threat: ThreatModel,
    targets: torch.Tensor | None = None,
) -> AttackResult:
    """Project proposed inputs onto the budget and bounds and recompute success and distances."""
    if proposed.x_adv.shape != x.shape:
        raise InputError(f"attack returned shape {tuple(proposed.x_adv.shape)} for inputs {tuple(x.shape)}")
    x_adv = proposed.x_adv.detach().to(x.dtype)
    x_adv = torch.where(torch.isfinite(x_adv), x_adv, x)
    x_adv = project(x_adv, x, threat.norm, threat.eps, threat.bounds)
    with torch.no_grad():
        predictions = model.predict(x_adv) if len(x) else y.new_zeros(0)
    success = goal_reached(predictions, y, targets)
    # A failed attempt leaves the clean input as the worst case found.
    x_adv = torch.where(per_sample(success, x), x_adv, x)
    queries = proposed.queries.to(torch.int64).cpu() + 1
    return AttackResult(x_adv, success, distance(x_adv - x, threat.norm), queries, predictions)
