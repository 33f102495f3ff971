"""Seeding and per-sample keyed randomness.

Attacks draw their random numbers from :func:`keyed_uniform` / :func:`keyed_normal`, a stateless
hash of ``(seed, sample key, stream, element position)``. A sample's random start, search
directions and so on therefore do not depend on which batch it is in, how large the batch is, or
which other points are still being attacked. That makes attacks deterministic under a seed, lets the
cascade evaluator run an attack on a subset and get exactly what the attack alone would get on those
points, and lets a sharded run reproduce a local one.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

_M31 = (1 << 31) - 1
# Odd 31-bit multipliers; with 31-bit operands the int64 products never overflow.
_MULTIPLIERS = (0x5BD1E995 & _M31, 0x27D4EB2F, 0x165667B1, 0x61C88647)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (for training loops and tests)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derive_seed(seed: int, *labels: str | int) -> int:
    """A child seed for a named purpose (an attack in a suite, a restart), stable across runs."""
    text = ":".join([str(seed), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


def _mix(h: torch.Tensor) -> torch.Tensor:
    """Avalanche a tensor of 31-bit non-negative int64 values (xorshift-multiply rounds)."""
    for multiplier in _MULTIPLIERS:
        h = h ^ (h >> 15)
        h = (h * multiplier) & _M31
    return h ^ (h >> 13)


def _keyed_bits(keys: torch.Tensor, seed: int, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """31-bit hashes, shape ``(N, *shape)``, a pure function of (seed, keys[i], stream, position)."""
    keys = keys.to(torch.int64)
    count = int(np.prod(shape)) if shape else 1
    position = torch.arange(count, device=keys.device, dtype=torch.int64)
    seed_hash = _mix(torch.tensor([seed & _M31, (seed >> 31) & _M31, stream & _M31], device=keys.device))
    per_sample = _mix((keys & _M31) ^ seed_hash[0])
    per_sample = _mix(per_sample ^ ((keys >> 31) & _M31) ^ seed_hash[1])
    per_sample = _mix(per_sample ^ seed_hash[2])
    bits = _mix(per_sample[:, None] ^ _mix(position)[None, :])
    return bits.reshape(len(keys), *shape)


def keyed_uniform(
    keys: torch.Tensor, seed: int, stream: int, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform numbers in [0, 1), shape ``(N, *shape)``, one independent stream per sample key.

    Args:
        keys: ``(N,)`` int64 sample keys (see :func:`bastion.core.ids.sample_keys`).
        seed: the run's seed.
        stream: a counter that separates successive draws (iteration number, restart, purpose).
        shape: the per-sample shape.
    """
    return (_keyed_bits(keys, seed, stream, shape).to(torch.float64) / float(1 << 31)).to(dtype)


def keyed_normal(
    keys: torch.Tensor, seed: int, stream: int, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal numbers, shape ``(N, *shape)``, by Box-Muller on two keyed uniform streams."""
    u1 = keyed_uniform(keys, seed, 2 * stream, shape, dtype=torch.float64).clamp_min(1e-12)
    u2 = keyed_uniform(keys, seed, 2 * stream + 1, shape, dtype=torch.float64)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)).to(dtype)


def keyed_randint(keys: torch.Tensor, seed: int, stream: int, high: torch.Tensor | int) -> torch.Tensor:
    """One integer per sample in ``[0, high)``; ``high`` may differ per sample (an ``(N,)`` tensor)."""
    u = keyed_uniform(keys, seed, stream, (), dtype=torch.float64)
    high_t = torch.as_tensor(high, device=keys.device, dtype=torch.float64)
    return torch.minimum((u * high_t).floor(), high_t - 1).clamp_min(0).to(torch.int64)
