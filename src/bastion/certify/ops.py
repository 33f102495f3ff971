"""The operations IBP and CROWN bound: each has an exact ``forward`` and an interval ``interval``.

Linear operations (:class:`Dense`, :class:`Conv`, :class:`ScaleShift`, :class:`Reshape`) also have the
transposed map ``backward`` and the bias term ``bias_term`` that CROWN's backward pass needs; the
linear relaxations of :class:`ReLU` and :class:`MaxPool` live in ``crown.py``. Shapes exclude the batch
dimension; ``in_shape``/``out_shape`` are set by :func:`bastion.certify.network.build_chain`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Interval = tuple[torch.Tensor, torch.Tensor]


@dataclass(eq=False)
class Op:
    """One operation on per-sample tensors. ``in_shape``/``out_shape`` exclude the batch dimension."""

    name: str
    in_shape: tuple[int, ...] = field(default=(), init=False)
    out_shape: tuple[int, ...] = field(default=(), init=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        """Bounds on the output over the box ``[lower, upper]`` (both ``(N, *in_shape)``)."""
        raise NotImplementedError


class LinearOp(Op):
    """An affine map ``x -> M x + b``. ``backward(A)`` is ``A M`` and ``bias_term(A)`` is ``A b``.

    ``A`` has shape ``(N, S, *out_shape)``: ``S`` linear functions of the output per sample.
    """

    mixing = False  # does an output depend on more than one input element?

    def backward(self, coeffs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bias_term(self, coeffs: torch.Tensor) -> torch.Tensor | None:
        return None

    def unit_rows(self, index: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``backward`` and ``bias_term`` of the rows ``weight * e_index`` (``(N, S)`` flat output indices).

        The first step of CROWN from a layer's own neurons; subclasses skip building the unit vectors.
        """
        n, s = index.shape
        units = weight.new_zeros(n, s, math.prod(self.out_shape)).scatter(2, index[..., None], weight[..., None])
        units = units.reshape(n, s, *self.out_shape)
        bias = self.bias_term(units)
        return self.backward(units), weight.new_zeros(n, s) if bias is None else bias

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        mid, rad = (upper + lower) / 2, (upper - lower) / 2
        out_mid, out_rad = self.forward(mid), self.abs_map(rad)
        return out_mid - out_rad, out_mid + out_rad

    def abs_map(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part with every weight replaced by its absolute value (no bias)."""
        raise NotImplementedError

    def square_map(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part with every weight squared (no bias): row norms for the l2 dual norm."""
        raise NotImplementedError


@dataclass(eq=False)
class Dense(LinearOp):
    """``nn.Linear``: weight ``(out, in)``, bias ``(out,)``, on flat ``(N, in)`` inputs."""

    weight: torch.Tensor = field(default=None)  # type: ignore[assignment]
    bias: torch.Tensor = field(default=None)  # type: ignore[assignment]
    mixing = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def abs_map(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.abs())

    def square_map(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.square())

    def backward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs @ self.weight

    def bias_term(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs @ self.bias

    def unit_rows(self, index: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight[index] * weight[..., None], self.bias[index] * weight


@dataclass(eq=False)
class Conv(LinearOp):
    """``nn.Conv2d`` with zero padding: weight ``(C_out, C_in / groups, kh, kw)``, bias ``(C_out,)``."""

    weight: torch.Tensor = field(default=None)  # type: ignore[assignment]
    bias: torch.Tensor = field(default=None)  # type: ignore[assignment]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    mixing = True

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight, self.bias)

    def abs_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight.abs(), None)

    def square_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight.square(), None)

    def backward(self, coeffs: torch.Tensor) -> torch.Tensor:
        n, s = coeffs.shape[:2]
        flat = coeffs.reshape(n * s, *self.out_shape)
        # The transposed convolution may be a few pixels short when the stride skipped them.
        extra = [
            size_in - ((size_out - 1) * st - 2 * pad + dil * (k - 1) + 1)
            for size_in, size_out, st, pad, dil, k in zip(
                self.in_shape[1:], self.out_shape[1:], self.stride, self.padding, self.dilation,
                self.weight.shape[2:], strict=True,
            )
        ]
        out = F.conv_transpose2d(flat, self.weight, None, self.stride, self.padding, tuple(extra),
                                 self.groups, self.dilation)
        return out.reshape(n, s, *self.in_shape)

    def bias_term(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs.sum(dim=(-2, -1)) @ self.bias

    def unit_rows(self, index: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's kernel written at its receptive field: no convolution needed."""
        if self.groups != 1:
            return super().unit_rows(index, weight)
        n, s = index.shape
        channels_in, height, width = self.in_shape
        out_h, out_w = self.out_shape[1:]
        (kernel_h, kernel_w), (pad_h, pad_w) = self.weight.shape[2:], self.padding
        flat = index.reshape(-1)
        channel, row, col = flat // (out_h * out_w), (flat // out_w) % out_h, flat % out_w
        device = index.device
        padded_h, padded_w = height + 2 * pad_h, width + 2 * pad_w
        taps_h = self.dilation[0] * torch.arange(kernel_h, device=device)[:, None]
        taps_w = self.dilation[1] * torch.arange(kernel_w, device=device)[None, :]
        within = (taps_h * padded_w + taps_w).flatten()  # offsets of the kernel taps in a padded plane
        planes = (torch.arange(channels_in, device=device) * (padded_h * padded_w))[:, None]
        corner = row * self.stride[0] * padded_w + col * self.stride[1]
        positions = (corner[:, None, None] + planes + within).flatten(1)
        values = (self.weight[channel] * weight.reshape(-1)[:, None, None, None]).flatten(1)
        padded = values.new_zeros(len(flat), channels_in * padded_h * padded_w).scatter(1, positions, values)
        padded = padded.reshape(len(flat), channels_in, padded_h, padded_w)
        coeffs = padded[:, :, pad_h : pad_h + height, pad_w : pad_w + width]
        return coeffs.reshape(n, s, *self.in_shape), self.bias[channel].reshape(n, s) * weight


@dataclass(eq=False)
class ScaleShift(LinearOp):
    """Elementwise ``x * scale + shift``; ``scale`` and ``shift`` have shape ``in_shape``."""

    scale: torch.Tensor = field(default=None)  # type: ignore[assignment]
    shift: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def abs_map(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.abs()

    def square_map(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.square()

    def backward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs * self.scale

    def bias_term(self, coeffs: torch.Tensor) -> torch.Tensor:
        return (coeffs * self.shift).flatten(2).sum(2)


@dataclass(eq=False)
class Reshape(LinearOp):
    """``nn.Flatten``: ``(N, *in_shape) -> (N, prod(in_shape))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        return lower.flatten(1), upper.flatten(1)

    def abs_map(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    square_map = abs_map

    def backward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs.reshape(*coeffs.shape[:2], *self.in_shape)


@dataclass(eq=False)
class ReLU(Op):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        return lower.clamp_min(0), upper.clamp_min(0)


@dataclass(eq=False)
class MaxPool(Op):
    """``nn.MaxPool2d`` (floor mode); padded positions never win (they count as ``-inf``)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
        return self.forward(lower), self.forward(upper)  # max is monotone in every input


@dataclass(eq=False)
class Chain:
    """The operations of a classifier in order; ``forward`` equals ``classifier.logits``."""

    ops: list[Op]
    input_shape: tuple[int, ...]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op.forward(x)
        return x


