"""Model inversion, MI-Face style (Fredrikson, Jha and Ristenpart, CCS 2015): what does a class look like?

For each class ``c`` the attack runs gradient descent on an input, from a fixed start, to minimise

    cost(x) = 1 - p_c(x) + tv_weight * TV(x) + l2_weight * mean((x - start)^2)

keeping ``x`` inside the model's bounds (clipped after every step), and returns the lowest-cost input
seen. For a model that memorised its few training examples of a class, the reconstruction can look
like them: the privacy leak. The optional priors keep the image smooth (total variation, anisotropic,
over the last two axes) or near the start. Needs gradients: ``access == "white"``.

The steps are Adam's (the paper used plain gradient descent): ``1 - p_c`` has vanishing gradients
where ``p_c`` is near 0, and Adam's per-coordinate scaling keeps such an input moving. Fredrikson's
post-processing (denoising, sharpening) is left out. Deterministic: no randomness is drawn.

Shapes: reconstructions ``(K, *input_shape)`` for ``K`` classes (default every class, in order).

Example:
    >>> result = MIFace(steps=300, tv_weight=0.01).invert(model)
    >>> result.confidences          # p_c of each class's reconstruction, (C,)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks.inference.base import require_access
from bastion.core.errors import InputError
from bastion.models.base import Classifier


@dataclass(frozen=True, eq=False)
class InversionResult:
    """One reconstruction per inverted class.

    Attributes:
        reconstructions: ``(K, *input_shape)`` float32 inputs inside the model's bounds.
        classes: ``(K,)`` int64, the class each reconstruction was driven towards.
        confidences: ``(K,)`` ``p_c`` of each reconstruction, from a fresh forward pass.
        costs: ``(K,)`` the objective at the returned reconstruction (confidence term plus priors).
        steps: gradient steps taken (fewer than asked when every cost reached ``stop_cost``).
        params: the attack's configuration, for the evidence record.
    """

    reconstructions: torch.Tensor
    classes: torch.Tensor
    confidences: torch.Tensor
    costs: torch.Tensor
    steps: int
    params: dict[str, Any] = field(default_factory=dict)


class MIFace:
    """Gradient-descent model inversion against a white-box classifier.

    Args:
        steps: the most gradient steps, default 300.
        lr: Adam's step size in input units, default 0.05.
        tv_weight: weight of the total-variation prior, default 0 (needs inputs with >= 2 axes).
        l2_weight: weight of the mean squared distance to the start, default 0.
        stop_cost: stop once every class's best cost is at or below this, default 0.01
            (``p_c >= 0.99`` without priors); ``0`` runs all the steps.
        start: the starting input: ``None`` (default) is the middle of the bounds everywhere; a number
            is a constant input; a tensor of shape ``input_shape`` or ``(K, *input_shape)`` is used as is.
    """

    name = "mi-face"

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.05,
        tv_weight: float = 0.0,
        l2_weight: float = 0.0,
        stop_cost: float = 0.01,
        start: float | torch.Tensor | None = None,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise InputError(f"steps must be a positive integer, got {steps!r}")
        self.steps = int(steps)
        self.lr = _non_negative(lr, "lr")
        if self.lr == 0:
            raise InputError("lr must be > 0")
        self.tv_weight = _non_negative(tv_weight, "tv_weight")
        self.l2_weight = _non_negative(l2_weight, "l2_weight")
        self.stop_cost = _non_negative(stop_cost, "stop_cost")
        if start is not None and not isinstance(start, torch.Tensor):
            start = _finite(start, "start")
        self.start = start

    def get_params(self) -> dict[str, Any]:
        start = self.start if not isinstance(self.start, torch.Tensor) else f"tensor{tuple(self.start.shape)}"
        return {"steps": self.steps, "lr": self.lr, "tv_weight": self.tv_weight, "l2_weight": self.l2_weight,
                "stop_cost": self.stop_cost, "start": start}

    def invert(self, model: Classifier, classes: Sequence[int] | torch.Tensor | None = None) -> InversionResult:
        """Reconstruct an input for each of ``classes`` (default ``0 .. C-1``).

        Raises:
            CapabilityError: the model does not offer gradients (``access`` is not ``"white"``).
            InputError: unknown classes, a start of the wrong shape or outside the bounds, a TV prior on
                1-D inputs.
        """
        require_access(model, "white", self.name)
        targets = self._classes(model, classes)
        if self.tv_weight > 0 and len(model.input_shape) < 2:
            raise InputError(f"the TV prior needs inputs with at least 2 axes (images); the model takes "
                             f"{tuple(model.input_shape)}: set tv_weight=0")
        device = getattr(model, "device", None)
        device = device if isinstance(device, torch.device) else torch.device("cpu")
        start = self._start(model, len(targets)).to(device)
        targets = targets.to(device)
        low, high = model.bounds
        x = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=self.lr)
        best = start.clone()
        best_cost = torch.full((len(targets),), math.inf, device=device)
        taken = 0
        with torch.enable_grad():
            while True:
                cost = self._cost(model, x, targets, start)
                with torch.no_grad():
                    improved = cost < best_cost
                    best[improved], best_cost[improved] = x[improved], cost[improved]
                if taken == self.steps or bool((best_cost <= self.stop_cost).all()):
                    break
                optimiser.zero_grad()
                cost.sum().backward()
                optimiser.step()
                taken += 1
                with torch.no_grad():
                    x.clamp_(low, high)
        with torch.no_grad():
            confidences = torch.softmax(model.logits(best), dim=1).gather(1, targets[:, None]).squeeze(1)
        return InversionResult(best.detach(), targets.cpu(), confidences.detach().cpu(), best_cost.detach().cpu(),
                               taken, self.get_params())

    def _cost(self, model: Classifier, x: torch.Tensor, targets: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``(K,)`` per-class cost; rows are independent, so summing them gives each row its own gradient."""
        confidence = torch.softmax(model.logits(x), dim=1).gather(1, targets[:, None]).squeeze(1)
        cost = 1 - confidence
        if self.tv_weight > 0:
            cost = cost + self.tv_weight * _total_variation(x)
        if self.l2_weight > 0:
            cost = cost + self.l2_weight * (x - start).pow(2).flatten(1).mean(dim=1)
        return cost

    def _classes(self, model: Classifier, classes: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        if classes is None:
            return torch.arange(model.num_classes)
        values = torch.as_tensor(classes)
        if values.ndim != 1 or len(values) == 0 or values.is_floating_point() or values.dtype == torch.bool:
            raise InputError(f"classes must be a non-empty 1-D list of class indices, got {classes!r}")
        values = values.to(torch.int64)
        if int(values.min()) < 0 or int(values.max()) >= model.num_classes:
            raise InputError(f"classes must lie in 0..{model.num_classes - 1}, got {values.tolist()}")
        return values

    def _start(self, model: Classifier, count: int) -> torch.Tensor:
        low, high = model.bounds
        shape = tuple(model.input_shape)
        if self.start is None:
            return torch.full((count, *shape), (low + high) / 2)
        if not isinstance(self.start, torch.Tensor):
            if not low <= self.start <= high:
                raise InputError(f"start={self.start} is outside the model's bounds [{low}, {high}]")
            return torch.full((count, *shape), float(self.start))
        start = self.start.detach().to(torch.float32).cpu()
        if tuple(start.shape) == shape:
            start = start.expand(count, *shape)
        if tuple(start.shape) != (count, *shape):
            raise InputError(f"start must have shape {shape} or {(count, *shape)}, got {tuple(self.start.shape)}")
        if not bool(torch.isfinite(start).all()) or float(start.min()) < low or float(start.max()) > high:
            raise InputError(f"start must be finite and inside the model's bounds [{low}, {high}]")
        return start.clone()


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV per sample ``(K,)``: mean absolute difference of neighbours along the last two axes."""
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return vertical + horizontal


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(value: object, name: str) -> float:
    number = _finite(value, name)
    if number < 0:
        raise InputError(f"{name} must be >= 0, got {value!r}")
    return number
