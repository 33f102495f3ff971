"""Per-API-key extraction monitor: PRADA's distance test, plus OOD-rate, class-coverage and budget signals.

Paper: Juuti, Szyller, Marchal, Asokan, "PRADA: Protecting Against DNN Model Stealing Attacks",
EuroS&P 2019 (Algorithm 1).

PRADA, per key. Natural queries lie at distances from each other that are about normally
distributed; an attack that synthesises queries by small steps from a few seeds (Papernot's
Jacobian augmentation, adversarial-example probing) puts a spike of small, similar distances into
that distribution. For a new query ``x`` predicted as class ``c``:

1. ``d`` = the smallest L2 distance (over flattened inputs) from ``x`` to the key's *growing set*
   ``G_c`` of earlier class-``c`` queries; ``d`` is recorded for the test. The first query of a
   class joins ``G_c`` with distance 0 and records nothing. Exact repeats (``d == 0``) are ignored:
   a client retrying a request would otherwise put a spike at zero, and a repeat teaches an
   attacker nothing.
2. ``x`` joins ``G_c`` when ``d >= T_c``; after each join ``T_c`` rises to ``mean - std`` of the
   distances its members joined with, if that is higher (it never falls). So ``G_c`` keeps queries
   that are far from each other, and ``d`` measures how far a query is from what the key explored.
3. Every ``check_every`` queries, once ``min_queries`` distances are recorded, the Shapiro-Wilk
   statistic ``W`` of the last ``max_history`` distances, less those more than 3 standard deviations
   from their mean, is computed; ``W < shapiro_threshold`` raises the ``"prada"`` alert.

Other signals, each raised once per key (until :meth:`ExtractionMonitor.reset`):

- ``"ood-rate"``: the key's count of out-of-distribution flags (from an input detector, passed as
  ``ood``) against ``ood_rate_expected``, the detector's false-positive rate, by a one-sided
  binomial test: ``P(K >= k | n, ood_rate_expected) < ood_alpha``. Knockoff-style extraction with
  a natural but foreign image pool (digits against a clothing model) trips it within tens of queries.
- ``"coverage"``: the key's answers span at least ``coverage`` distinct classes (off by default).
  A policy signal for keys whose legitimate use needs a few classes only.
- ``"budget"``: the key sent more than ``budget`` queries (off by default). The monitor only
  reports it; refusing requests is the gateway's job.

Defaults: ``shapiro_threshold = 0.9``, ``min_queries = 150``, ``check_every = 10``,
``max_history = 1000``. Measured on Fashion-MNIST (``benchmarks/gateway_monitor.py``): over
10,000 ordinary test-set queries on 10 keys the lowest W was 0.94 (0.95 with all of them on one
key; 0.924 with ``min_queries = 100``, whose first tests are noisier), while Jacobian augmentation
fell below 0.9 after 160 to 180 queries.

Cost per query: a matrix-vector product with the class's growing set (at most ``max_history``
rows, on one BLAS thread) and, every ``check_every`` queries, a Shapiro-Wilk W (``bastion.monitor.normality``,
its coefficients cached for the last 64 window sizes). Memory per key:
at most ``max_history`` float32 rows per class and ``max_history`` distances (for 28x28 inputs and
10 classes at most about 31 MB, reached only by a key whose queries keep exploring).

Thread-safety: one lock guards all state; the monitor may be shared by a server's threads.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from threadpoolctl import ThreadpoolController

from bastion.core.errors import InputError
from bastion.monitor import normality

Signal = Literal["prada", "ood-rate", "coverage", "budget"]


class ExtractionAlert(BaseModel):
    """One signal of one key crossing its threshold (raised once)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    signal: Signal
    queries: int = Field(description="the key's query count when the signal crossed its threshold")
    value: float = Field(description="the statistic: Shapiro-Wilk W, binomial p-value, classes seen, or queries")
    threshold: float
    message: str


class KeySignals(BaseModel):
    """Where one key stands on every signal."""

    model_config = ConfigDict(extra="forbid")

    key_id: str
    queries: int
    distances: int = Field(description="PRADA distances in the test window")
    growing_set: int = Field(description="queries kept in the key's growing sets, all classes")
    shapiro_w: float | None = Field(description="W of the last PRADA test; None before the first")
    ood_queries: int = Field(description="queries observed with an out-of-distribution flag")
    ood_flagged: int
    ood_rate: float | None
    classes_seen: int
    alerts: list[ExtractionAlert]


class _GrowingSet:
    """One class's growing set: float32 rows (oldest evicted beyond ``capacity``) and the distances they joined at."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.capacity, self.size, self.added = capacity, 0, 0  # once full, slot ``added % capacity`` is the oldest
        self.rows = np.empty((min(64, capacity), dim), dtype=np.float32)
        self.norms = np.empty(len(self.rows), dtype=np.float32)  # squared norms of the rows
        self.joined = np.empty(len(self.rows))
        self.sums = [0, 0.0, 0.0]  # count, sum and sum of squares of the members' joining distances
        self.threshold = 0.0

    def measure_and_join(self, row: np.ndarray, norm: float) -> float:
        """PRADA steps 1-2 for ``row`` ``(D,)``: its distance to the set (nan for the first query or a repeat)."""
        if not self.size:
            self._add(row, norm, 0.0)  # a class's first query joins at distance 0 and records nothing
            return math.nan
        # The nearest member by a float32 product (|m|^2 - 2 m.x ranks members as |m - x|^2), then exactly.
        nearest = int(np.argmin(self.norms[: self.size] - 2.0 * (self.rows[: self.size] @ row)))
        difference = row - self.rows[nearest]
        distance = math.sqrt(float(difference @ difference))
        if distance == 0.0:
            return math.nan
        if distance >= self.threshold:
            self._add(row, norm, distance)
        return distance

    def _add(self, row: np.ndarray, norm: float, distance: float) -> None:
        if self.size == len(self.rows) < self.capacity:
            grown = min(2 * self.size, self.capacity)
            self.rows = np.concatenate([self.rows, np.empty((grown - self.size, self.rows.shape[1]), np.float32)])
            self.norms, self.joined = np.resize(self.norms, grown), np.resize(self.joined, grown)
        slot = self.added % self.capacity
        if self.size == self.capacity:
            self._count(float(self.joined[slot]), -1)
        self.rows[slot], self.norms[slot], self.joined[slot] = row, norm, distance
        self._count(distance, 1)
        count, total, squares = self.sums
        mean = total / count
        self.threshold = max(self.threshold, mean - math.sqrt(max(squares / count - mean * mean, 0.0)))
        self.size, self.added = min(self.size + 1, self.capacity), self.added + 1

    def _count(self, distance: float, sign: int) -> None:
        self.sums[0] += sign
        self.sums[1] += sign * distance
        self.sums[2] += sign * distance * distance


@dataclass
class _KeyState:
    dim: int
    capacity: int
    queries: int = 0
    sets: dict[int, _GrowingSet] = field(default_factory=dict)
    ring: np.ndarray = field(init=False)  # the last ``capacity`` recorded distances, a ring buffer
    recorded: int = 0  # distances ever recorded
    shapiro_w: float | None = None
    ood_queries: int = 0
    ood_flagged: int = 0
    classes: set[int] = field(default_factory=set)
    alerts: list[ExtractionAlert] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ring = np.empty(self.capacity)

    def record(self, distance: float) -> None:
        self.ring[self.recorded % self.capacity] = distance
        self.recorded += 1

    def window(self) -> np.ndarray:
        """The last recorded distances (at most the capacity), in ring order: W does not depend on order."""
        return self.ring[: min(self.recorded, self.capacity)]

    def fired(self, signal: Signal) -> bool:
        return any(alert.signal == signal for alert in self.alerts)


class ExtractionMonitor:
    """Watch each API key's queries for model extraction (see the module docstring for the signals).

    Args:
        shapiro_threshold: PRADA's ``delta``: alert when ``W`` < this, in (0, 1); default 0.9.
        min_queries: distances recorded before PRADA tests (default 150, >= 3).
        check_every: queries between PRADA tests (default 10).
        max_history: growing-set rows kept per class and distances in the test window (default 1000,
            >= ``min_queries``); bounds the memory and cost per key.
        ood_rate_expected: the OOD flag rate of ordinary traffic (the detector's false-positive
            rate), in (0, 1); default 0.05.
        ood_alpha: significance of the one-sided binomial test, in (0, 1); default 1e-6.
        coverage: alert when a key's answers span this many classes (>= 2); default ``None`` (off).
        budget: alert when a key sends more than this many queries (>= 1); default ``None`` (off).
    """

    def __init__(
        self,
        *,
        shapiro_threshold: float = 0.9,
        min_queries: int = 150,
        check_every: int = 10,
        max_history: int = 1000,
        ood_rate_expected: float = 0.05,
        ood_alpha: float = 1e-6,
        coverage: int | None = None,
        budget: int | None = None,
    ) -> None:
        self.shapiro_threshold = _fraction(shapiro_threshold, "shapiro_threshold")
        self.min_queries = _integer(min_queries, "min_queries", 3)
        self.check_every = _integer(check_every, "check_every", 1)
        self.max_history = _integer(max_history, "max_history", self.min_queries)
        self.ood_rate_expected = _fraction(ood_rate_expected, "ood_rate_expected")
        self.ood_alpha = _fraction(ood_alpha, "ood_alpha")
        self.coverage = None if coverage is None else _integer(coverage, "coverage", 2)
        self.budget = None if budget is None else _integer(budget, "budget", 1)
        self._keys: dict[str, _KeyState] = {}
        self._lock = threading.Lock()

    def get_params(self) -> dict[str, object]:
        """The ``__init__`` parameters, for the evidence record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def observe(self, key_id: str, x: np.ndarray | torch.Tensor, predicted: np.ndarray | torch.Tensor, *,
                ood: np.ndarray | torch.Tensor | None = None) -> list[ExtractionAlert]:
        """Record a batch of one key's queries, in order; returns the alerts it raised (new ones only).

        Args:
            key_id: the API key (any non-empty string).
            x: ``(N, *shape)`` float inputs as sent to the model; every batch of a key has one shape.
            predicted: ``(N,)`` integer labels the model answered.
            ood: ``(N,)`` bool out-of-distribution flags from an input detector, or ``None``.

        Raises:
            InputError: an empty key, mismatched lengths, a changed input shape, or non-finite inputs.
        """
        flat, labels, flags = _check_batch(key_id, x, predicted, ood)
        if not len(labels):
            return []
        with self._lock:
            state = self._keys.get(key_id)
            if state is None:
                state = self._keys[key_id] = _KeyState(dim=flat.shape[1], capacity=self.max_history)
            if flat.shape[1] != state.dim:
                raise InputError(f"key {key_id!r} sent inputs of {flat.shape[1]} values after {state.dim}; one key "
                                 "must query one model input shape (reset the key to start over)")
            with _blas_threads.one():
                prada = self._prada(key_id, state, flat, labels)
            alerts = [*prada, *self._ood(key_id, state, flags), *self._coverage(key_id, state, labels),
                      *self._budget(key_id, state, len(labels))]
            state.queries += len(labels)
            alerts.sort(key=lambda alert: alert.queries)
            state.alerts.extend(alerts)
            return alerts

    def signals(self, key_id: str) -> KeySignals:
        """Where ``key_id`` stands (all zero for a key never seen)."""
        with self._lock:
            state = self._keys.get(key_id) or _KeyState(dim=0, capacity=1)
            return KeySignals(
                key_id=key_id, queries=state.queries, distances=len(state.window()),
                growing_set=sum(s.size for s in state.sets.values()), shapiro_w=state.shapiro_w,
                ood_queries=state.ood_queries, ood_flagged=state.ood_flagged,
                ood_rate=state.ood_flagged / state.ood_queries if state.ood_queries else None,
                classes_seen=len(state.classes), alerts=list(state.alerts))

    def reset(self, key_id: str) -> None:
        """Forget everything about ``key_id`` (its alerts can fire again)."""
        with self._lock:
            self._keys.pop(key_id, None)

    def keys(self) -> list[str]:
        """The keys with recorded state."""
        with self._lock:
            return list(self._keys)

    # --- signals ------------------------------------------------------------------------------------

    def _prada(self, key_id: str, state: _KeyState, flat: np.ndarray, labels: np.ndarray) -> list[ExtractionAlert]:
        distances = _growing_set_distances(state, flat, labels, self.max_history)
        alerts: list[ExtractionAlert] = []
        for index, distance in enumerate(distances.tolist()):
            if not math.isnan(distance):
                state.record(distance)
            queries = state.queries + index + 1
            if queries % self.check_every or min(state.recorded, self.max_history) < self.min_queries:
                continue
            window = state.window()
            state.shapiro_w = _shapiro(window)
            if state.shapiro_w < self.shapiro_threshold and not state.fired("prada") and not alerts:
                alerts.append(ExtractionAlert(
                    key_id=key_id, signal="prada", queries=queries, value=state.shapiro_w,
                    threshold=self.shapiro_threshold,
                    message=f"the distances between key {key_id!r}'s queries are not normally distributed "
                            f"(Shapiro-Wilk W = {state.shapiro_w:.3f} < {self.shapiro_threshold:g} over "
                            f"{len(window)} distances): synthetic queries, as in model extraction"))
        return alerts

    def _ood(self, key_id: str, state: _KeyState, flags: np.ndarray | None) -> list[ExtractionAlert]:
        if flags is None:
            return []
        if state.fired("ood-rate") or not flags.any():  # the p-value only falls at a flagged query
            state.ood_flagged, state.ood_queries = state.ood_flagged + int(flags.sum()), state.ood_queries + len(flags)
            return []
        flagged = state.ood_flagged + np.cumsum(flags)
        observed = state.ood_queries + np.arange(1, len(flags) + 1)
        state.ood_flagged, state.ood_queries = int(flagged[-1]), int(observed[-1])
        # Only where the flag rate is above the expected rate can the one-sided p-value be small.
        candidates = np.flatnonzero(flags & (flagged > observed * self.ood_rate_expected))
        if not len(candidates):
            return []
        p_values = stats.binom.sf(flagged[candidates] - 1, observed[candidates], self.ood_rate_expected)
        below = np.flatnonzero(p_values < self.ood_alpha)
        if not len(below):
            return []
        index, p_value = int(candidates[below[0]]), float(p_values[below[0]])
        return [ExtractionAlert(
            key_id=key_id, signal="ood-rate", queries=state.queries + index + 1, value=p_value,
            threshold=self.ood_alpha,
            message=f"key {key_id!r} sent {int(flagged[index])} out-of-distribution inputs in {int(observed[index])} "
                    f"(expected rate {self.ood_rate_expected:g}; binomial p = {p_value:.2g} < {self.ood_alpha:g})")]

    def _coverage(self, key_id: str, state: _KeyState, labels: np.ndarray) -> list[ExtractionAlert]:
        alerts: list[ExtractionAlert] = []
        if self.coverage is not None and len(state.classes) < self.coverage:
            seen = set(state.classes)
            for index, label in enumerate(labels.tolist()):
                seen.add(label)
                if len(seen) == self.coverage:
                    alerts.append(ExtractionAlert(
                        key_id=key_id, signal="coverage", queries=state.queries + index + 1, value=len(seen),
                        threshold=self.coverage,
                        message=f"key {key_id!r} has received answers of {self.coverage} distinct classes"))
                    break
        state.classes.update(labels.tolist())
        return alerts

    def _budget(self, key_id: str, state: _KeyState, count: int) -> list[ExtractionAlert]:
        if self.budget is None or state.queries > self.budget or state.queries + count <= self.budget:
            return []
        return [ExtractionAlert(
            key_id=key_id, signal="budget", queries=self.budget + 1, value=self.budget + 1, threshold=self.budget,
            message=f"key {key_id!r} sent more than its budget of {self.budget} queries")]


def _growing_set_distances(state: _KeyState, flat: np.ndarray, labels: np.ndarray, capacity: int) -> np.ndarray:
    """PRADA steps 1-2 for a batch ``(N, D)``, query by query: ``(N,)`` recorded distances (nan where none).

    Sequential by nature: a query that joins its growing set is a neighbour for the next one.
    """
    norms = np.einsum("nd,nd->n", flat, flat)
    distances = np.full(len(labels), np.nan)
    for index, label in enumerate(labels.tolist()):
        grow = state.sets.get(label)
        if grow is None:
            grow = state.sets[label] = _GrowingSet(flat.shape[1], capacity)
        distances[index] = grow.measure_and_join(flat[index], float(norms[index]))
    return distances


@functools.cache
def _blas_libraries() -> list[Any]:
    """The process's BLAS libraries, as threadpoolctl controls them (found once)."""
    return [library for library in ThreadpoolController().lib_controllers if library.user_api == "blas"]


class _BlasThreads:
    """Switches the process's BLAS libraries to one thread around the monitor's products, and back.

    Reading a library's thread count through threadpoolctl costs about 10 µs, so whether every library already
    runs one thread (a server started with ``OMP_NUM_THREADS=1``: nothing to switch) is read at most once every
    ``recheck_seconds``. Shared by the process's monitors without a lock: a read made while another thread has
    switched to one thread can trust one thread until the next recheck, which costs speed, never results."""

    def __init__(self, recheck_seconds: float = 1.0) -> None:
        self.recheck_seconds = recheck_seconds
        self._single_until = -math.inf  # monotonic time until which every library is known to run one thread

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        """Run the block with one BLAS thread. The monitor's products are small, and on a busy machine a
        multi-threaded BLAS made them up to 50 times slower."""
        now = time.monotonic()
        if now < self._single_until:
            yield
            return
        libraries = _blas_libraries()
        previous = [library.num_threads for library in libraries]
        if all(threads == 1 for threads in previous):
            self._single_until = now + self.recheck_seconds
            yield
            return
        for library in libraries:
            library.set_num_threads(1)
        try:
            yield
        finally:
            for library, threads in zip(libraries, previous, strict=True):
                library.set_num_threads(threads)


_blas_threads = _BlasThreads()


def _shapiro(values: np.ndarray) -> float:
    """Shapiro-Wilk W of ``values`` within 3 standard deviations of their mean (1.0 with fewer than 3 distinct).
    The mean and standard deviation by a sum and a dot product: ``ndarray.mean`` and ``std`` took 50 µs together on
    1,000 values, most of it in their argument handling."""
    spread = values - values.sum() / len(values)
    kept = values[np.abs(spread) <= 3.0 * math.sqrt(float(spread @ spread) / len(values))]
    if len(kept) < 3:
        return 1.0
    if len(kept) < normality.MIN_SIZE:
        return 1.0 if np.ptp(kept) == 0 else float(stats.shapiro(kept).statistic)
    return normality.shapiro_w(kept)  # 1.0 for equal values


def _check_batch(key_id: object, x: object, predicted: object,
                 ood: object) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(N, D)`` float32 inputs, ``(N,)`` int64 labels and ``(N,)`` bool flags (or ``None``), checked."""
    if not isinstance(key_id, str) or not key_id:
        raise InputError(f"key_id must be a non-empty string, got {key_id!r}")
    inputs = _numpy(x, "x")
    if inputs.ndim < 2 or inputs.dtype.kind != "f":
        raise InputError(f"x must be a float batch (N, *shape), got {inputs.dtype} {inputs.shape}")
    flat = np.ascontiguousarray(inputs.reshape(len(inputs), math.prod(inputs.shape[1:])), dtype=np.float32)
    if not np.isfinite(flat).all():
        raise InputError("x contains NaN or infinite values")
    labels = _numpy(predicted, "predicted")
    if labels.shape != (len(flat),) or labels.dtype.kind not in "iu":
        raise InputError(f"predicted must be {len(flat)} integer labels of shape ({len(flat)},), one per input, "
                         f"got {labels.dtype} {labels.shape}")
    if ood is None:
        return flat, labels.astype(np.int64), None
    flags = _numpy(ood, "ood")
    if flags.shape != (len(flat),) or flags.dtype != np.bool_:
        raise InputError(f"ood must be {len(flat)} booleans of shape ({len(flat)},), one per input, got "
                         f"{flags.dtype} {flags.shape}")
    return flat, labels.astype(np.int64), flags


def _numpy(value: object, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise InputError(f"{name} must be a NumPy array or a torch tensor, got {type(value).__name__}")


def _fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _integer(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


__all__ = ["ExtractionAlert", "ExtractionMonitor", "KeySignals", "Signal"]
