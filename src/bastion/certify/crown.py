"""CROWN: linear bounds propagated backwards from a specification to the input.

Paper: Zhang, Weng, Chen, Hsieh, Daniel, "Efficient Neural Network Robustness Certification with
General Activation Functions", NeurIPS 2018; CROWN-IBP: Zhang, Chen, Xiao, Gowal, Stanforth, Li,
Boning, Hsieh, "Towards Stable and Efficient Training of Verifiably Robust Neural Networks", ICLR 2020.

A specification ``spec`` ``(N, S, C)`` asks for lower bounds of ``spec @ logits`` (margins
``z_y - z_j`` when each row is ``e_y - e_j``). Going backwards, each linear op is multiplied into the
coefficients exactly and each nonlinear op is replaced by linear lower/upper bounds valid on its
input interval, chosen per coefficient sign; at the input the linear function is minimised over
the input region (``InputRegion.concretize``).

Relaxations (both sound on the interval ``[l, u]`` of the op's input):

* ReLU, unstable (``l < 0 < u``): upper line through ``(l, 0)`` and ``(u, u)``; lower line ``y >= x``
  when ``u > -l``, else ``y >= 0`` (CROWN's adaptive choice). Stable neurons are exact.
* MaxPool: lower bound ``max >= x_i*``, the input with the largest lower bound in the window (the
  first one on ties); upper bound ``max == x_i*`` when ``l_i* >= u_j`` for every other ``j`` in the
  window (the max is then always ``x_i*``), else the constant ``max_j u_j``. The same relaxation as
  auto_LiRPA's non-optimised MaxPool.

Intermediate bounds (the intervals the relaxations need): ``intermediate="crown"`` computes the input
interval of every ReLU/MaxPool by a CROWN pass from that layer (for a ReLU not followed by a MaxPool,
only the neurons IBP cannot prove stable), ``"ibp"`` (CROWN-IBP) takes them from IBP. With
``intersect=True`` (default) each refined interval is intersected with IBP's and the final bound is the
larger of CROWN's and IBP's, so it is never looser than IBP. ``intersect=False`` is plain CROWN: every
neuron's interval and the final bound from CROWN alone (what auto_LiRPA computes with its sparse
intermediate bounds switched off).
Specifications are processed in chunks of rows so no coefficient tensor exceeds ``max_elements`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bastion.certify import windows
from bastion.certify.ibp import InputRegion, interval_bounds, spec_lower
from bastion.certify.ops import Chain, Conv, Interval, LinearOp, MaxPool, ReLU, Reshape, ScaleShift

Intermediate = Literal["crown", "ibp"]

#: Largest coefficient tensor (values) a backward pass materialises; more rows are done in chunks.
MAX_ELEMENTS = 1 << 23


@dataclass(eq=False)
class ReluRelaxation:
    """Per neuron ``(N, *shape)``: ``lower_slope * x <= relu(x) <= upper_slope * x + upper_intercept``."""

    lower_slope: torch.Tensor
    upper_slope: torch.Tensor
    upper_intercept: torch.Tensor


@dataclass(eq=False)
class MaxPoolRelaxation:
    """Per output ``(N, C, L)``: the winning input's flat index, whether the max is linear, the upper constant."""

    index: torch.Tensor
    linear: torch.Tensor
    upper: torch.Tensor


def relu_relaxation(lower: torch.Tensor, upper: torch.Tensor) -> ReluRelaxation:
    """CROWN's relaxation of ReLU on ``[lower, upper]`` (module docstring); differentiable in the bounds."""
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, upper - lower, torch.ones_like(upper))
    upper_slope = torch.where(unstable, upper / width, active.to(upper.dtype))
    intercept = torch.where(unstable, -lower * upper_slope, torch.zeros_like(upper))
    lower_slope = torch.where(unstable, (upper > -lower).to(upper.dtype), active.to(upper.dtype))
    return ReluRelaxation(lower_slope, upper_slope, intercept)


def maxpool_relaxation(op: MaxPool, lower: torch.Tensor, upper: torch.Tensor) -> MaxPoolRelaxation:
    """The MaxPool relaxation (module docstring) for input bounds ``(N, C, H, W)``."""
    height, width = lower.shape[-2:]
    positions = torch.arange(height * width, dtype=torch.float64, device=lower.device).reshape(1, 1, height, width)
    lower_w = _windows(op, lower, float("-inf"))
    upper_w = _windows(op, upper, float("-inf"))
    winner = lower_w.argmax(dim=2, keepdim=True)
    best_lower = lower_w.gather(2, winner).squeeze(2)
    others = upper_w.scatter(2, winner, float("-inf")).amax(dim=2)
    index = _windows(op, positions, -1.0).expand(*lower_w.shape[:2], -1, -1).gather(2, winner).squeeze(2)
    return MaxPoolRelaxation(index.long(), (best_lower >= others).to(lower.dtype), upper_w.amax(dim=2))


def _windows(op: MaxPool, values: torch.Tensor, fill: float) -> torch.Tensor:
    """The pooling windows of ``values`` ``(N, C, H, W)`` as ``(N, C, kh * kw, L)``, padding set to ``fill``."""
    pad_h, pad_w = op.padding
    padded = F.pad(values, (pad_w, pad_w, pad_h, pad_h), value=fill)
    columns = F.unfold(padded, op.kernel, dilation=op.dilation, stride=op.stride)
    return columns.reshape(values.shape[0], values.shape[1], op.kernel[0] * op.kernel[1], -1)


class BackwardBounds:
    """CROWN's backward pass over ``chain`` for inputs in ``region``.

    Use :meth:`refine` as the ``refine`` hook of :func:`~bastion.certify.ibp.interval_bounds` (CROWN
    intermediate bounds) or not (CROWN-IBP); then :meth:`lower` bounds any specification.
    """

    def __init__(self, chain: Chain, region: InputRegion, *, intersect: bool = True,
                 max_elements: int = MAX_ELEMENTS) -> None:
        self.chain = chain
        self.region = region
        self.intersect = intersect
        self.max_elements = max_elements
        self.bounds: list[Interval] = []
        self._relaxations: dict[int, ReluRelaxation | MaxPoolRelaxation] = {}

    def lower(self, end: int, spec: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` lower bounds of ``spec . h`` where ``h`` is the output of op ``end - 1``.

        ``spec`` is ``(N, S, *shape of h)``; ``self.bounds`` must hold the input bounds of every
        nonlinear op before ``end``.
        """
        rows = self._rows(end)
        parts = [self._lower_chunk(end, spec[:, start : start + rows]) for start in range(0, spec.shape[1], rows)]
        return torch.cat(parts, dim=1) if parts else spec.new_zeros(len(spec), 0)

    def _rows(self, end: int) -> int:
        widths = [_numel(op.in_shape) for op in self.chain.ops[:end]] + [_numel(self.chain.ops[end - 1].out_shape)]
        return max(1, self.max_elements // (len(self.region.center) * max(widths)))

    def _lower_chunk(self, end: int, coeffs: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if bias is None:
            bias = coeffs.new_zeros(coeffs.shape[:2])
        for index in reversed(range(end)):
            op = self.chain.ops[index]
            if isinstance(op, LinearOp):
                term = op.bias_term(coeffs)
                if term is not None:
                    bias = bias + term
                coeffs = op.backward(coeffs)
            else:
                coeffs, term = self._relaxed_backward(index, coeffs)
                bias = bias + term
        return self.region.concretize(coeffs, bias)

    def _windowed(self, producer: int) -> bool:
        """Can the backward pass from a Conv's neurons run on receptive-field windows?"""
        ops = self.chain.ops
        return (isinstance(ops[producer], Conv) and len(self.chain.input_shape) == 3
                and all(isinstance(op, windows.SPATIAL) for op in ops[:producer]))

    def _lower_window(self, end: int, window: windows.Window, bias: torch.Tensor) -> torch.Tensor:
        """As :meth:`_lower_chunk` for rows given as windows on the output of op ``end - 1``."""
        for index in reversed(range(end)):
            op = self.chain.ops[index]
            height, width = window.size
            if height >= op.out_shape[1] and width >= op.out_shape[2]:
                return self._lower_chunk(index + 1, windows.to_dense(window, op.out_shape), bias)
            if isinstance(op, Conv):
                window, term = windows.conv_backward(op, window)
            elif isinstance(op, ScaleShift):
                window, term = windows.scale_backward(op, window)
            else:
                relaxation = self._relaxation(index)
                if isinstance(relaxation, ReluRelaxation):
                    window, term = windows.relu_backward(relaxation.lower_slope, relaxation.upper_slope,
                                                         relaxation.upper_intercept, window)
                else:
                    assert isinstance(op, MaxPool)
                    window, term = windows.maxpool_backward(op, relaxation.index, relaxation.linear,
                                                            relaxation.upper, window)
            bias = bias + term
        return windows.concretize(self.region, window, bias)

    def _relaxation(self, index: int) -> ReluRelaxation | MaxPoolRelaxation:
        if index not in self._relaxations:
            op, (lower, upper) = self.chain.ops[index], self.bounds[index]
            if isinstance(op, MaxPool):
                self._relaxations[index] = maxpool_relaxation(op, lower, upper)
            else:
                self._relaxations[index] = relu_relaxation(lower, upper)
        return self._relaxations[index]

    def _relaxed_backward(self, index: int, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients on the op's input and the bias from its relaxation (lower bound: per sign)."""
        relaxation = self._relaxation(index)
        if isinstance(relaxation, ReluRelaxation):
            slopes = torch.where(coeffs >= 0, relaxation.lower_slope[:, None], relaxation.upper_slope[:, None])
            bias = torch.einsum("nsd,nd->ns", coeffs.clamp(max=0).flatten(2), relaxation.upper_intercept.flatten(1))
            return coeffs * slopes, bias
        op = self.chain.ops[index]
        n, s = coeffs.shape[:2]
        channels = op.in_shape[0]
        coeffs = coeffs.reshape(n, s, channels, -1)
        # Positive coefficients follow the lower bound x_i*, negative ones the upper bound: x_i* where the
        # max is linear, else the constant (their coefficient then moves into the bias).
        linear = relaxation.linear.bool()[:, None]
        bias = torch.einsum("nscl,ncl->ns", coeffs.clamp(max=0), (~linear[:, 0]).to(coeffs.dtype) * relaxation.upper)
        kept = torch.where((coeffs >= 0) | linear, coeffs, 0.0)
        index_map = relaxation.index[:, None].expand(n, s, -1, -1)
        new = coeffs.new_zeros(n, s, channels, _numel(op.in_shape[1:])).scatter_add(3, index_map, kept)
        return new.reshape(n, s, *op.in_shape), bias

    def refine(self, index: int, bounds: list[Interval]) -> Interval:
        """Tighter input bounds for op ``index`` by CROWN (a hook for ``interval_bounds``)."""
        self.bounds = bounds
        lower, upper = bounds[index]
        producer = self._producer(index)
        if producer is None:
            return lower, upper
        if isinstance(self.chain.ops[index], ReLU) and self.intersect and not self._feeds_max_pool(index):
            # Only stability matters to the ReLU relaxation: IBP's interval is as good for stable neurons.
            chosen = ((lower < 0) & (upper > 0)).flatten(1)
        else:
            chosen = torch.ones_like(lower, dtype=torch.bool).flatten(1)
        return self._refine_chosen(index, producer, lower, upper, chosen)

    def _feeds_max_pool(self, index: int) -> bool:
        """A MaxPool right after op ``index`` relaxes with the intervals themselves, not just their signs."""
        ops = self.chain.ops
        return index + 1 < len(ops) and isinstance(ops[index + 1], MaxPool)

    def _producer(self, index: int) -> int | None:
        """The affine op whose output (through Flattens) feeds ReLU/MaxPool ``index`` when CROWN can
        tighten IBP there; ``None`` for other ops and where IBP is already exact."""
        ops = self.chain.ops
        if not isinstance(ops[index], (ReLU, MaxPool)):
            return None
        producer = index - 1
        while producer >= 0 and isinstance(ops[producer], Reshape):
            producer -= 1
        if producer < 0 or not isinstance(ops[producer], LinearOp):
            return None
        before = ops[:index]
        nonlinear = any(not isinstance(op, LinearOp) for op in before)
        exact = not nonlinear and sum(op.mixing for op in before if isinstance(op, LinearOp)) <= 1
        return None if exact else producer

    def _refine_chosen(self, index: int, producer: int, lower: torch.Tensor, upper: torch.Tensor,
                       chosen: torch.Tensor) -> Interval:
        """Run CROWN for the ``chosen`` ``(N, n)`` neurons of each sample, in chunks."""
        count = int(chosen.sum(dim=1).max()) if chosen.numel() else 0
        if count == 0:
            return lower, upper
        order = torch.argsort(chosen.to(torch.int8), dim=1, descending=True, stable=True)[:, :count]
        valid = chosen.gather(1, order)
        flat_lower, flat_upper = lower.flatten(1), upper.flatten(1)
        new_lower, new_upper = flat_lower.gather(1, order), flat_upper.gather(1, order)
        windowed = self._windowed(producer)
        if windowed:
            width = max(windows.window_sizes(self.chain.ops, producer + 1))
            rows = max(1, self.max_elements // (2 * len(lower) * width))
        else:
            rows = max(1, self._rows(index) // 2)
        parts_lower, parts_upper = [], []
        for start in range(0, count, rows):
            picked, ok = order[:, start : start + rows], valid[:, start : start + rows].to(lower.dtype)
            # Rows +e_i (lower bounds) and -e_i (minus upper bounds); Flattens keep flat indices.
            units, signs = torch.cat([picked, picked], 1), torch.cat([ok, -ok], 1)
            if windowed:
                window = windows.unit_window(units, signs, self.chain.ops[producer].out_shape)
                result = self._lower_window(producer + 1, window, signs.new_zeros(signs.shape))
            else:
                coeffs, bias = self.chain.ops[producer].unit_rows(units, signs)
                result = self._lower_chunk(producer, coeffs, bias)
            parts_lower.append(result[:, : picked.shape[1]])
            parts_upper.append(-result[:, picked.shape[1] :])
        crown_lower, crown_upper = torch.cat(parts_lower, dim=1), torch.cat(parts_upper, dim=1)
        if self.intersect:
            crown_lower, crown_upper = torch.maximum(crown_lower, new_lower), torch.minimum(crown_upper, new_upper)
        new_lower = torch.where(valid, crown_lower, new_lower)
        new_upper = torch.where(valid, crown_upper, new_upper)
        return (flat_lower.scatter(1, order, new_lower).reshape(lower.shape),
                flat_upper.scatter(1, order, new_upper).reshape(upper.shape))


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def crown_lower(
    chain: Chain,
    region: InputRegion,
    spec: torch.Tensor,
    *,
    intermediate: Intermediate = "crown",
    intersect: bool = True,
    max_elements: int = MAX_ELEMENTS,
) -> torch.Tensor:
    """``(N, S)`` CROWN lower bounds of ``spec @ logits`` (``spec`` ``(N, S, C)``) over ``region``."""
    solver = BackwardBounds(chain, region, intersect=intersect, max_elements=max_elements)
    bounds = interval_bounds(chain, region, refine=solver.refine if intermediate == "crown" else None)
    solver.bounds = bounds
    result = solver.lower(len(chain.ops), spec)
    return torch.maximum(result, spec_lower(chain, bounds, spec)) if intersect else result


def crown_ibp_lower(chain: Chain, region: InputRegion, spec: torch.Tensor,
                    *, max_elements: int = MAX_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """IBP's and CROWN-IBP's ``(N, S)`` lower bounds from one IBP pass (CROWN-IBP training mixes them)."""
    bounds = interval_bounds(chain, region)
    solver = BackwardBounds(chain, region, intersect=False, max_elements=max_elements)
    solver.bounds = bounds
    return spec_lower(chain, bounds, spec), solver.lower(len(chain.ops), spec)
