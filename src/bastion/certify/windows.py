"""CROWN's backward pass for the neurons of a convolutional layer, on their receptive fields only.

A neuron of a convolution's output depends on a small window of each earlier feature map. Its
backward coefficients are therefore stored as a :class:`Window`: a ``(N, S, C, h, w)`` block and the
``(top, left)`` corner of each row's block in the map. Going backwards a Conv or MaxPool grows the
window (``h_in = (h - 1) * stride + dilation * (kernel - 1) + 1``) and ReLU/ScaleShift keep it; the
coefficients outside the map are kept at zero. On a CNN this is what makes CROWN's intermediate bounds
affordable: a coefficient tensor per row the size of the receptive field, not of the whole map
(auto_LiRPA's "patches" serve the same purpose). A window as large as its map turns back into a dense
tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bastion.certify.ibp import InputRegion
from bastion.certify.ops import Conv, MaxPool, Op, ReLU, ScaleShift

SPATIAL = (Conv, MaxPool, ReLU, ScaleShift)


@dataclass(eq=False)
class Window:
    """Coefficients ``(N, S, C, h, w)`` on a ``(C, H, W)`` map.

    Every row starts from one neuron of the same (convolutional) layer, at grid position ``position``
    ``(N, S)`` (``row * grid_w + col`` in that layer's ``grid_h x grid_w`` map), and all windows lie on
    a regular grid: row ``(n, s)``'s block starts at ``(row * step_h + offset_h, col * step_w + offset_w)``.
    """

    coeffs: torch.Tensor
    position: torch.Tensor
    grid: tuple[int, int]
    step: tuple[int, int] = (1, 1)
    offset: tuple[int, int] = (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        return self.coeffs.shape[-2], self.coeffs.shape[-1]

    def corners(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(top, left)`` ``(N, S)`` of every row's block in the map."""
        row, col = self.position // self.grid[1], self.position % self.grid[1]
        return row * self.step[0] + self.offset[0], col * self.step[1] + self.offset[1]

    def replace(self, coeffs: torch.Tensor, op: Conv | MaxPool | None = None) -> Window:
        """The same rows with new coefficients; moved onto the input of ``op`` when it is given."""
        if op is None:
            return Window(coeffs, self.position, self.grid, self.step, self.offset)
        step = (self.step[0] * op.stride[0], self.step[1] * op.stride[1])
        offset = (self.offset[0] * op.stride[0] - op.padding[0], self.offset[1] * op.stride[1] - op.padding[1])
        return Window(coeffs, self.position, self.grid, step, offset)


def unit_window(index: torch.Tensor, weight: torch.Tensor, shape: tuple[int, ...]) -> Window:
    """Rows ``weight * e_index`` (flat indices ``(N, S)`` into a ``(C, H, W)`` map) as 1x1 windows."""
    channels, height, width = shape
    channel, position = index // (height * width), index % (height * width)
    coeffs = weight.new_zeros(*index.shape, channels).scatter(2, channel[..., None], weight[..., None])
    return Window(coeffs[..., None, None], position, (height, width))


def window_sizes(ops: list[Op], end: int) -> list[int]:
    """Values per row at the input of each op before ``end``, starting from a 1x1 window at op ``end - 1``.

    Once a window covers its whole map the pass turns dense, so from there on the sizes are the maps'.
    """
    height = width = 1
    sizes = []
    dense = False
    for op in reversed(ops[:end]):
        dense = dense or (height >= op.out_shape[1] and width >= op.out_shape[2])
        if not dense and isinstance(op, (Conv, MaxPool)):
            kernel = op.weight.shape[2:] if isinstance(op, Conv) else op.kernel
            height = (height - 1) * op.stride[0] + op.dilation[0] * (kernel[0] - 1) + 1
            width = (width - 1) * op.stride[1] + op.dilation[1] * (kernel[1] - 1) + 1
        sizes.append(math.prod(op.in_shape) if dense else op.in_shape[0] * height * width)
    return sizes


def gather(values: torch.Tensor, window: Window) -> torch.Tensor:
    """``values`` ``(N or 1, C, H, W)`` read at every row's window: ``(N, S, C, h, w)``, zero off the map.

    The map is unfolded once into the grid's blocks, then each row copies its block.
    """
    height, width = window.size
    full_h, full_w = values.shape[-2:]
    span_h = (window.grid[0] - 1) * window.step[0] + height
    span_w = (window.grid[1] - 1) * window.step[1] + width
    top, left = window.offset
    # Zero-pad (or crop) the map to exactly the rows/columns the grid of blocks covers.
    padded = F.pad(values, (-left, left + span_w - full_w, -top, top + span_h - full_h))
    blocks = F.unfold(padded, (height, width), stride=window.step)  # (B, C*h*w, grid_h*grid_w)
    blocks = blocks.transpose(1, 2).contiguous()
    batch = torch.arange(len(window.position), device=values.device)[:, None]
    if len(values) == 1:
        batch = torch.zeros_like(batch)
    return blocks[batch, window.position].reshape(*window.position.shape, values.shape[1], height, width)


def to_dense(window: Window, shape: tuple[int, ...]) -> torch.Tensor:
    """The window's coefficients as a dense ``(N, S, C, H, W)`` tensor (the parts off the map dropped)."""
    _, full_h, full_w = shape
    n, s, channels, height, width = window.coeffs.shape
    top, left = window.corners()
    rows = top[..., None] + torch.arange(height, device=top.device)
    cols = left[..., None] + torch.arange(width, device=top.device)
    on_map = ((rows >= 0) & (rows < full_h))[..., :, None] & ((cols >= 0) & (cols < full_w))[..., None, :]
    flat = (rows.clamp(0, full_h - 1)[..., :, None] * full_w + cols.clamp(0, full_w - 1)[..., None, :]).flatten(2)
    values = (window.coeffs * on_map[:, :, None].to(window.coeffs.dtype)).flatten(3)
    dense = values.new_zeros(n, s, channels, full_h * full_w)
    dense = dense.scatter_add(3, flat[:, :, None].expand(-1, -1, channels, -1), values)
    return dense.reshape(n, s, *shape)


def conv_backward(op: Conv, window: Window) -> tuple[Window, torch.Tensor]:
    """Through a convolution: a transposed convolution of each row's block, and the bias term."""
    n, s, channels, height, width = window.coeffs.shape
    bias = window.coeffs.sum(dim=(-2, -1)) @ op.bias
    flat = window.coeffs.reshape(n * s, channels, height, width)
    out = F.conv_transpose2d(flat, op.weight, None, op.stride, 0, 0, op.groups, op.dilation)
    grown = window.replace(out.reshape(n, s, *out.shape[1:]), op)
    # Blocks reaching past the map's edge hit the zero padding: those coefficients must be zero.
    on_map = gather(torch.ones(1, 1, *op.in_shape[1:], dtype=out.dtype, device=out.device), grown)
    return grown.replace(grown.coeffs * on_map), bias


def scale_backward(op: ScaleShift, window: Window) -> tuple[Window, torch.Tensor]:
    scale, shift = gather(op.scale[None], window), gather(op.shift[None], window)
    bias = (window.coeffs * shift).flatten(2).sum(2)
    return window.replace(window.coeffs * scale), bias


def relu_backward(lower_slope: torch.Tensor, upper_slope: torch.Tensor, intercept: torch.Tensor,
                  window: Window) -> tuple[Window, torch.Tensor]:
    """Through a relaxed ReLU (slopes and intercept ``(N, C, H, W)``): per-sign slopes, intercepts to the bias."""
    coeffs = window.coeffs
    channels = coeffs.shape[2]
    picked = gather(torch.cat([lower_slope, upper_slope, intercept], dim=1), window)
    lower_w, upper_w, intercept_w = picked.split(channels, dim=2)
    slopes = torch.where(coeffs >= 0, lower_w, upper_w)
    bias = (coeffs.clamp(max=0) * intercept_w).flatten(2).sum(2)
    return window.replace(coeffs * slopes), bias


def maxpool_backward(op: MaxPool, index: torch.Tensor, linear: torch.Tensor, upper: torch.Tensor,
                     window: Window) -> tuple[Window, torch.Tensor]:
    """Through a relaxed MaxPool (``crown.maxpool_relaxation``'s tensors, ``(N, C, Ho * Wo)``)."""
    n, s, channels, height, width = window.coeffs.shape
    out_h, out_w = op.out_shape[1:]
    full_w = op.in_shape[2]
    in_h = (height - 1) * op.stride[0] + op.dilation[0] * (op.kernel[0] - 1) + 1
    in_w = (width - 1) * op.stride[1] + op.dilation[1] * (op.kernel[1] - 1) + 1
    grown = window.replace(window.coeffs, op)
    top, left = grown.corners()
    stacked = torch.cat([t.reshape(len(t), channels, out_h, out_w) for t in (index.to(upper.dtype), linear, upper)], 1)
    picked = gather(stacked, window)
    winner, is_linear, constant = picked.split(channels, dim=2)
    coeffs = window.coeffs
    bias = (coeffs.clamp(max=0) * (1 - is_linear) * constant).flatten(2).sum(2)
    kept = torch.where((coeffs >= 0) | (is_linear > 0), coeffs, 0.0)
    winner = winner.long()
    local = (winner // full_w - top[..., None, None, None]) * in_w + (winner % full_w - left[..., None, None, None])
    local = local.clamp(0, in_h * in_w - 1)  # rows outside the map carry zero coefficients anyway
    new = coeffs.new_zeros(n, s, channels, in_h * in_w).scatter_add(3, local.flatten(3), kept.flatten(3))
    return grown.replace(new.reshape(n, s, channels, in_h, in_w)), bias


def concretize(region: InputRegion, window: Window, bias: torch.Tensor) -> torch.Tensor:
    """``(N, S)`` lower bounds over the region of linear functions given as windows on the input."""
    coeffs = window.coeffs
    lower, upper = region.box()
    channels = coeffs.shape[2]
    picked = gather(torch.cat([upper + lower, upper - lower], dim=1) / 2, window)
    mid, rad = picked.split(channels, dim=2)
    result = (coeffs * mid).flatten(2).sum(2) - (coeffs.abs() * rad).flatten(2).sum(2)
    if region.norm == "l2":
        at_center = (coeffs * gather(region.center, window)).flatten(2).sum(2)
        ball = at_center - region.eps[:, None] * coeffs.flatten(2).norm(dim=2)
        result = torch.maximum(result, ball)
    return result + bias
