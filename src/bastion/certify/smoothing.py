"""Randomized smoothing: PREDICT and CERTIFY of Cohen, Rosenfeld & Kolter (ICML 2019).

The smoothed classifier is ``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, for any
base classifier ``f`` (white-box or black-box: only its top label is used). If the top class has
probability ``pA``, ``g`` is constant on the l2 ball of radius ``sigma * Phi^-1(pA)``; CERTIFY
replaces ``pA`` by a one-sided Clopper-Pearson lower bound, so each certificate holds with
probability at least ``1 - alpha`` over the noise.

Implementation notes:

- Noise is added in the classifier's input units and the noisy input is **not** clipped to the
  bounds, as in Cohen et al.: the certificate is about ``f`` on all of input space.
- Votes are counted in batches of at most ``batch_size`` noisy copies (several samples share a
  batch when they need few draws), so peak memory is ``O(batch_size * input size)`` whatever ``n``.
- Noise is reproducible per sample whatever the batching: draws come in pages of
  :data:`NOISE_PAGE` draws, and page ``p`` of sample ``key`` in a stream is filled by a
  ``torch.Generator`` seeded with ``derive_seed(seed, "gaussian-smoothing", stream, key, p)``.
  (The hash-based :func:`bastion.core.seeding.keyed_normal` costs tens of times more per number
  than torch's generator, which matters at millions of draws per sample.) Values are the same
  on every machine of one device type and torch version.
- A :class:`~bastion.models.torch_adapter.TorchClassifier` with image inputs runs in the
  channels-last memory layout during sampling (``channels_last=True``): the same function, with
  faster CPU convolutions; the module is restored to its previous layout afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm

from bastion.certify.base import Certificate
from bastion.core.errors import InputError
from bastion.core.ids import sample_keys
from bastion.core.seeding import derive_seed
from bastion.models.base import Classifier
from bastion.models.torch_adapter import TorchClassifier

#: Draws per generator page: the unit that makes noise independent of the batch size.
NOISE_PAGE = 16


def clopper_pearson_lower(successes: np.ndarray | int, trials: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound on a binomial proportion (0 when no success).

    Args:
        successes, trials: integers or arrays of the same shape, ``0 <= successes <= trials``.
        alpha: level in ``(0, 1)``; with all ``n`` trials successful the bound is ``alpha ** (1 / n)``.
    """
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    bound = beta.ppf(alpha, np.maximum(k, 1.0), n - k + 1.0)
    return np.where(k > 0, bound, 0.0)


def clopper_pearson_upper(successes: np.ndarray | int, trials: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided ``1 - alpha`` Clopper-Pearson upper bound on a binomial proportion (1 when all succeed)."""
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    bound = beta.ppf(1.0 - alpha, k + 1.0, np.maximum(n - k, 1.0))
    return np.where(k < n, bound, 1.0)


def smoothing_radius(p_lower: np.ndarray | float, sigma: float) -> np.ndarray:
    """Cohen's l2 radius ``sigma * Phi^-1(p_lower)``; ``-inf`` where ``p_lower <= 0.5`` (abstain)."""
    p = np.asarray(p_lower, dtype=np.float64)
    return np.where(p > 0.5, sigma * norm.ppf(np.clip(p, 0.5, 1.0)), -np.inf)


@dataclass(frozen=True)
class SmoothingCertificate(Certificate):
    """A :class:`Certificate` with the statistics behind it.

    Attributes:
        top_class: the class chosen from the selection draws (kept even when abstaining).
        top_count: votes for ``top_class`` among the estimation draws.
        draws: estimation draws used.
        p_lower: the lower confidence bound on ``pA`` the radius comes from.
        forward_passes: base-model evaluations spent on this input (selection plus estimation).
    """

    top_class: int
    top_count: int
    draws: int
    p_lower: float
    forward_passes: int


def check_probability(name: str, value: float) -> None:
    """Raise :class:`InputError` unless ``0 < value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def check_count(name: str, value: int) -> None:
    """Raise :class:`InputError` unless ``value`` is an integer ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")


class GaussianSmoothing:
    """Gaussian randomized smoothing of a classifier (Cohen et al. 2019), l2 certificates.

    Args:
        model: the base classifier ``f``; only ``predict`` is called (any access level).
        sigma: noise standard deviation, ``> 0``, in the model's input units.
        batch_size: noisy copies per forward pass, default 1000; bounds the memory used.
        seed: the run's seed; with the sample keys it fixes every noise draw.
        channels_last: run a ``TorchClassifier`` with ``(C, H, W)`` inputs in channels-last
            layout while sampling (faster on CPU, same function). Default true.

    Example::

        smoothed = GaussianSmoothing(model, sigma=0.25, batch_size=256)
        certificates = smoothed.certify(x, n0=100, n=10_000, alpha=0.001)
    """

    def __init__(
        self, model: Classifier, sigma: float, *, batch_size: int = 1000, seed: int = 0, channels_last: bool = True
    ) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise InputError(f"sigma must be a finite number > 0 (the noise standard deviation), got {sigma!r}")
        check_count("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InputError(f"seed must be an integer, got {seed!r}")
        self.model = model
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.channels_last = bool(channels_last)

    def get_params(self) -> dict[str, Any]:
        """The smoothing configuration, for the evidence record."""
        return {"sigma": self.sigma, "batch_size": self.batch_size, "seed": self.seed,
                "channels_last": self.channels_last, "noise_page": NOISE_PAGE}

    def predict(
        self, x: torch.Tensor, *, n: int = 100, alpha: float = 0.001, keys: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cohen's PREDICT: labels ``(N,)`` int64 of ``g`` for inputs ``(N, *input_shape)``, ``-1`` = abstain.

        The top class is returned when a two-sided binomial test of its count against the runner-up's
        rejects equality at level ``alpha`` (default 0.001), so a returned class differs from
        ``g(x)`` with probability at most ``alpha``. ``n`` (default 100) noisy copies per input;
        ``keys`` as in :meth:`certify`.
        """
        check_count("n", n)
        check_probability("alpha", alpha)
        keys = self.check_inputs(x, keys)
        counts = self.vote_counts(x, keys, stream="predict", start=0, stop=n).numpy()
        ranked = np.argsort(-counts, axis=1, kind="stable")
        labels = []
        for row, order in zip(counts, ranked, strict=True):
            top, runner_up = int(row[order[0]]), int(row[order[1]]) if len(order) > 1 else 0
            significant = binomtest(top, top + runner_up, 0.5).pvalue <= alpha
            labels.append(int(order[0]) if significant else -1)
        return torch.tensor(labels, dtype=torch.int64)

    def certify(
        self,
        x: torch.Tensor,
        *,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        keys: torch.Tensor | None = None,
    ) -> list[SmoothingCertificate]:
        """Cohen's CERTIFY: one certificate per input of ``x`` ``(N, *input_shape)``.

        ``n0`` selection draws (default 100) choose the top class ``cA``; ``n`` fresh estimation draws
        (default 100,000) count its votes ``nA``; ``pA_lower`` is the one-sided Clopper-Pearson bound
        at level ``alpha`` (default 0.001). The certificate abstains when ``pA_lower <= 0.5``, else
        vouches for ``cA`` within l2 radius ``sigma * Phi^-1(pA_lower)``.

        Args:
            keys: ``(N,)`` int64 sample keys (see :mod:`bastion.core.ids`) that fix each input's
                noise; by default computed from the inputs' content.
        """
        check_count("n0", n0)
        check_count("n", n)
        check_probability("alpha", alpha)
        keys = self.check_inputs(x, keys)
        top = self.select(x, keys, n0)
        estimation = self.vote_counts(x, keys, stream="estimate", start=0, stop=n)
        top_counts = estimation.gather(1, top[:, None]).squeeze(1).numpy()
        p_lower = clopper_pearson_lower(top_counts, n, alpha)
        radii = smoothing_radius(p_lower, self.sigma)
        return [
            make_certificate(int(c), float(r), int(k), n, float(p), n0 + n)
            for c, r, k, p in zip(top.tolist(), radii, top_counts, p_lower, strict=True)
        ]

    def select(self, x: torch.Tensor, keys: torch.Tensor, n0: int) -> torch.Tensor:
        """Top class ``(N,)`` of ``n0`` selection draws (ties go to the lower class index)."""
        return self.vote_counts(x, keys, stream="select", start=0, stop=n0).argmax(dim=1)

    def check_inputs(self, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """Validate ``x`` ``(N, *input_shape)`` and ``keys`` ``(N,)``; return the keys (from content if none)."""
        shape = tuple(self.model.input_shape)
        if not isinstance(x, torch.Tensor) or x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"inputs must be a tensor of shape (N, {', '.join(map(str, shape))}), got {got}")
        if not x.is_floating_point():
            raise InputError(f"inputs must be floating point, got {x.dtype}")
        if len(x) and not bool(torch.isfinite(x).all()):
            raise InputError("inputs contain NaN or infinite values")
        if keys is None:
            return sample_keys(x, torch.full((len(x),), -1, dtype=torch.int64))
        if not isinstance(keys, torch.Tensor) or keys.shape != (len(x),) or keys.is_floating_point():
            got = tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__
            raise InputError(f"keys must be an integer tensor of shape ({len(x)},), one per input; got {got}")
        return keys.to(torch.int64).cpu()

    def vote_counts(self, x: torch.Tensor, keys: torch.Tensor, *, stream: str, start: int, stop: int) -> torch.Tensor:
        """Votes ``(N, C)`` int64 of the base model over draws ``start .. stop - 1`` of each input.

        Draw ``j`` of an input is the same noise whatever ``start``, ``stop`` and the batch size, so
        successive calls over consecutive ranges add up to one call over the whole range.
        """
        num_classes = int(self.model.num_classes)
        counts = torch.zeros(len(x) * num_classes, dtype=torch.int64)
        if stop <= start or not len(x):
            return counts.view(len(x), num_classes)
        with self._fast_layout(), torch.inference_mode():
            for owners, batch in self._noisy_batches(x, keys, stream, start, stop):
                labels = self.model.predict(batch).to("cpu", torch.int64)
                if labels.shape != owners.shape or bool((labels < 0).any() | (labels >= num_classes).any()):
                    raise InputError(
                        f"the model's predict returned {tuple(labels.shape)} labels outside 0..{num_classes - 1} "
                        f"for a batch of {len(owners)} inputs; it must return one class index per input"
                    )
                counts.index_add_(0, owners * num_classes + labels, torch.ones_like(labels))
        return counts.view(len(x), num_classes)

    def _noisy_batches(
        self, x: torch.Tensor, keys: torch.Tensor, stream: str, start: int, stop: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(owners, batch)``: input index per row ``(B,)`` and noisy inputs ``(B, *input_shape)``.

        One buffer of ``batch_size`` rows is reused; a batch is full except possibly the last one.
        """
        flat = x.detach().reshape(len(x), -1)
        buffer = torch.empty(self.batch_size, flat.shape[1], dtype=flat.dtype, device=flat.device)
        owners = torch.empty(self.batch_size, dtype=torch.int64)
        generator = torch.Generator(device=flat.device)
        fill = 0
        for index, key in enumerate(keys.tolist()):
            draw = start
            while draw < stop:
                take = min(self.batch_size - fill, stop - draw)
                rows = buffer[fill : fill + take]
                fill_noise(rows, generator, derive_seed(self.seed, "gaussian-smoothing", stream, key), draw,
                           center=flat[index], sigma=self.sigma)
                owners[fill : fill + take] = index
                fill, draw = fill + take, draw + take
                if fill == self.batch_size:
                    yield owners, self._as_inputs(buffer)
                    fill = 0
        if fill:
            yield owners[:fill], self._as_inputs(buffer[:fill])

    def _as_inputs(self, rows: torch.Tensor) -> torch.Tensor:
        batch = rows.view(len(rows), *self.model.input_shape)
        if batch.ndim == 4 and self._uses_channels_last():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _uses_channels_last(self) -> bool:
        return self.channels_last and isinstance(self.model, TorchClassifier) and len(self.model.input_shape) == 3

    @contextmanager
    def _fast_layout(self) -> Iterator[None]:
        """Channels-last weights while sampling (see the module notes); the layout is restored after.

        Skipped inside a caller's inference mode, where the converted weights would become inference
        tensors that can no longer be trained.
        """
        if not self._uses_channels_last() or torch.is_inference_mode_enabled():
            yield
            return
        module = self.model.module  # type: ignore[attr-defined]
        if any(p.ndim == 4 and not p.is_contiguous() for p in module.parameters()):
            yield  # the owner chose a layout already: leave it alone
            return
        with torch.no_grad():
            module.to(memory_format=torch.channels_last)
        try:
            yield
        finally:
            with torch.no_grad():
                module.to(memory_format=torch.contiguous_format)


def fill_noise(
    rows: torch.Tensor, generator: torch.Generator, sample_seed: int, first_draw: int, *, center: torch.Tensor,
    sigma: float,
) -> None:
    """Fill ``rows`` ``(m, D)`` with ``center + sigma * z`` for normal draws ``first_draw ..`` of one sample.

    Page ``p`` (draws ``p * NOISE_PAGE ..``) comes from ``generator`` seeded with
    ``derive_seed(sample_seed, p)``; partial pages are generated whole and sliced. Working page by
    page keeps every tensor operation small (single-threaded, cache-resident).
    """
    done, draw = 0, first_draw
    while done < len(rows):
        page, offset = divmod(draw, NOISE_PAGE)
        take = min(NOISE_PAGE - offset, len(rows) - done)
        generator.manual_seed(derive_seed(sample_seed, page))
        target = rows[done : done + take]
        if offset == 0 and take == NOISE_PAGE:
            target.normal_(0.0, sigma, generator=generator)
        else:
            whole = torch.empty(NOISE_PAGE, rows.shape[1], dtype=rows.dtype, device=rows.device)
            target.copy_(whole.normal_(0.0, sigma, generator=generator)[offset : offset + take])
        target.add_(center)
        done, draw = done + take, draw + take


def make_certificate(
    top_class: int, radius: float, top_count: int, draws: int, p_lower: float, forward_passes: int
) -> SmoothingCertificate:
    """A certificate for ``top_class``, or an abstention (``-1``, radius 0) when ``radius`` is ``-inf``."""
    abstained = not math.isfinite(radius)
    return SmoothingCertificate(
        prediction=-1 if abstained else top_class,
        radius=0.0 if abstained else max(radius, 0.0),
        abstained=abstained,
        top_class=top_class,
        top_count=top_count,
        draws=draws,
        p_lower=p_lower,
        forward_passes=forward_passes,
    )
