"""Interval bound propagation (IBP): a box around every layer's output, pushed forward layer by layer.

Paper: Gowal, Dvijotham, Stanforth, Bunel, Qin, Uesato, Arandjelovic, Mann, Kohli, "On the
Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models", 2018.

The input set is an :class:`InputRegion`: the linf or l2 ball of radius ``eps`` around ``x``, within the
classifier's bounds. For linf the region is a box and IBP starts from it exactly. For l2 IBP starts from
the box that contains the ball, and the first mixing layer (Linear/Conv) also gets the exact interval
of the ball, ``W x + b +- eps * ||W_i||_2`` (the dual norm); the tighter of the two is kept.
Every function is batched and differentiable in the network's parameters (IBP training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bastion.certify.ops import Chain, Dense, Interval, LinearOp, Reshape, ScaleShift
from bastion.core.threat import Norm

#: ``refine(k, bounds)`` returns tighter bounds for the input of op ``k`` given ``bounds[0..k]`` (CROWN).
Refine = Callable[[int, list[Interval]], Interval]


@dataclass(eq=False)
class InputRegion:
    """The inputs a bound holds over: the ``norm`` ball of radius ``eps`` around ``center``, in ``[low, high]``.

    Attributes:
        center: ``(N, *input_shape)`` the clean inputs.
        norm: ``"linf"`` or ``"l2"``.
        eps: ``(N,)`` radius per sample.
        low, high: the valid input range (the classifier's bounds).
    """

    center: torch.Tensor
    norm: Norm
    eps: torch.Tensor
    low: float
    high: float

    @classmethod
    def around(cls, x: torch.Tensor, norm: Norm, eps: float | torch.Tensor, bounds: tuple[float, float]) -> InputRegion:
        """The region around ``x`` ``(N, *input_shape)`` with a scalar or ``(N,)`` radius."""
        radius = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(len(x))
        return cls(x, norm, radius, float(bounds[0]), float(bounds[1]))

    def _per_sample(self, values: torch.Tensor) -> torch.Tensor:
        return values.reshape(-1, *([1] * (self.center.ndim - 1)))

    def box(self) -> Interval:
        """The smallest box holding the region (for l2: the linf box of the same radius, clipped)."""
        eps = self._per_sample(self.eps)
        return (self.center - eps).clamp(self.low, self.high), (self.center + eps).clamp(self.low, self.high)

    def concretize(self, coeffs: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` lower bounds of ``coeffs . x + bias`` over the region; ``coeffs`` is ``(N, S, *input_shape)``.

        Over the box the minimum is exact; for l2 the ball's minimum ``A x0 - eps ||A||_2`` is also
        valid and the larger of the two is returned.
        """
        flat = coeffs.flatten(2)
        lower, upper = self.box()
        mid, rad = ((upper + lower) / 2).flatten(1), ((upper - lower) / 2).flatten(1)
        result = torch.einsum("nsd,nd->ns", flat, mid) - torch.einsum("nsd,nd->ns", flat.abs(), rad)
        if self.norm == "l2":
            ball = torch.einsum("nsd,nd->ns", flat, self.center.flatten(1)) - self.eps[:, None] * flat.norm(dim=2)
            result = torch.maximum(result, ball)
        return result + bias


def interval_bounds(chain: Chain, region: InputRegion, refine: Refine | None = None) -> list[Interval]:
    """Bounds on the input of every op and on the output: a list of ``len(chain.ops) + 1`` intervals.

    ``bounds[k]`` is ``(lower, upper)``, each ``(N, *chain.ops[k].in_shape)``; ``bounds[-1]`` bounds
    the logits. ``refine`` (used by CROWN) may tighten the input bounds of each op before IBP uses them.
    """
    bounds = [region.box()]
    dual = _DualNorm(region) if region.norm == "l2" else None
    for index, op in enumerate(chain.ops):
        if refine is not None:
            bounds[index] = refine(index, bounds)
        lower, upper = op.interval(*bounds[index])
        if dual is not None:
            ball = dual.step(op)
            if ball is not None:
                lower, upper = torch.maximum(lower, ball[0]), torch.minimum(upper, ball[1])
            if dual.done:
                dual = None
        bounds.append((lower, upper))
    return bounds


class _DualNorm:
    """Follows the l2 ball through elementwise ops up to the first mixing op, where it is exact."""

    def __init__(self, region: InputRegion) -> None:
        self.center = region.center
        self.eps = region.eps
        self.scale_sq = torch.ones_like(region.center[:1])
        self.done = False

    def step(self, op: object) -> Interval | None:
        """The ball's exact interval at the output of ``op`` when ``op`` is the first mixing op."""
        if isinstance(op, (ScaleShift, Reshape)):
            self.center, self.scale_sq = op.forward(self.center), op.square_map(self.scale_sq)
            return None
        self.done = True
        if not (isinstance(op, LinearOp) and op.mixing):
            return None
        mid = op.forward(self.center)
        rad = self.eps.reshape(-1, *([1] * (mid.ndim - 1))) * op.square_map(self.scale_sq).clamp_min(0).sqrt()
        return mid - rad, mid + rad


def spec_lower(chain: Chain, bounds: list[Interval], spec: torch.Tensor) -> torch.Tensor:
    """IBP lower bounds ``(N, S)`` of ``spec @ logits`` for a specification ``spec`` ``(N, S, C)``.

    When the last op is a Linear layer the specification is multiplied into its weights first (it is
    linear, so this is exact and much tighter than combining logit intervals).
    """
    last = chain.ops[-1]
    if isinstance(last, Dense):
        lower, upper = bounds[-2]
        weight, bias = spec @ last.weight, spec @ last.bias
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        return torch.einsum("nsh,nh->ns", weight, mid) - torch.einsum("nsh,nh->ns", weight.abs(), rad) + bias
    lower, upper = bounds[-1]
    return torch.einsum("nsc,nc->ns", spec.clamp(min=0), lower) + torch.einsum("nsc,nc->ns", spec.clamp(max=0), upper)
