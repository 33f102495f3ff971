"""Distances, projections and steepest-ascent directions for the linf and l2 norms.

Every function works per sample on tensors of shape ``(N, *input_shape)``.
"""

from __future__ import annotations

import math

import torch

from bastion.core.seeding import keyed_normal, keyed_uniform
from bastion.core.threat import Norm


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(N,)`` per-sample values to broadcast against ``(N, ...)``."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def distance(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """``(N,)`` norm of each sample's perturbation."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(len(flat))
    return flat.norm(p=2, dim=1)


def clip_to_bounds(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return x.clamp(bounds[0], bounds[1])


def project(
    x_adv: torch.Tensor, x: torch.Tensor, norm: Norm, eps: float | torch.Tensor, bounds: tuple[float, float]
) -> torch.Tensor:
    """Nearest point (for linf; a radial rescale for l2) of the eps-ball around ``x``, then clipped to bounds.

    ``eps`` may be a float or an ``(N,)`` tensor. Clipping to a box that contains ``x`` never
    increases the distance to ``x``, so the result is inside both the ball and the bounds.
    """
    delta = x_adv - x
    eps_t = torch.as_tensor(eps, device=x.device, dtype=x.dtype)
    if norm == "linf":
        eps_b = per_sample(eps_t.expand(len(x)), x) if eps_t.ndim else eps_t
        delta = torch.maximum(torch.minimum(delta, eps_b), -eps_b)
    else:
        size = distance(delta, "l2")
        factor = torch.clamp(eps_t / size.clamp_min(1e-12), max=1.0)
        delta = delta * per_sample(factor, delta)
    return clip_to_bounds(x + delta, bounds)


def steepest_direction(gradient: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Unit-norm direction of steepest ascent: the sign for linf, the normalised gradient for l2."""
    if norm == "linf":
        return gradient.sign()
    size = distance(gradient, "l2")
    return gradient / per_sample(size.clamp_min(1e-12), gradient)


def random_in_ball(
    keys: torch.Tensor,
    seed: int,
    stream: int,
    like: torch.Tensor,
    norm: Norm,
    eps: float,
) -> torch.Tensor:
    """A perturbation drawn uniformly from the eps-ball, shape of ``like``, keyed per sample."""
    shape = tuple(like.shape[1:])
    if norm == "linf":
        u = keyed_uniform(keys, seed, stream, shape, dtype=like.dtype).to(like.device)
        return (2 * u - 1) * eps
    direction = keyed_normal(keys, seed, stream, shape, dtype=like.dtype).to(like.device)
    direction = direction / per_sample(distance(direction, "l2").clamp_min(1e-12), direction)
    dims = math.prod(shape)
    radius = keyed_uniform(keys, seed, stream + 1_000_003, (), dtype=like.dtype).to(like.device)
    return direction * per_sample(eps * radius ** (1.0 / dims), direction)
