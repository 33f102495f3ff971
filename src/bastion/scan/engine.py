"""Scan engines: where a scan's work runs. In this process (the default), or spread over a Ray cluster.

An engine runs a scan's cascade (:meth:`ScanEngine.run`) and maps independent jobs (:meth:`ScanEngine.map`:
LiRA's shadow models, say).

A cascade is separable by sample (see :mod:`bastion.scan.cascade`): attacks draw per-sample keyed randomness
and each attack's seed depends only on the scan seed and its name, so the cascade run on a shard of the
samples finds, for each of them, what the whole cascade finds. An engine therefore cuts the samples into
shards of whole batches, runs the cascade on each (anywhere), and :func:`merge_cascades` puts the results
back in sample order, with each attack's summary added up and its cumulative robust accuracy recomputed
from the merged points, so that the evidence record is the one a local run writes.

Each :class:`Shard` carries its samples' positions and ids, the scan seed, and the model by its content
hash (SHA-256): a worker refuses a model whose hash differs. Ray retries a shard whose worker dies
(``max_retries``), which is safe because a shard's result depends on nothing but the shard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

from bastion.attacks.base import EvasionAttack
from bastion.core.errors import CapabilityError, InputError
from bastion.core.records import AttackSummary
from bastion.core.threat import ThreatModel
from bastion.models.base import Classifier
from bastion.scan.cascade import CascadeResult, run_cascade
from bastion.scan.progress import ProgressCallback, no_progress

#: Ray retries a shard this many times when its worker dies.
DEFAULT_RETRIES = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """One piece of a scan: positions ``(n,)`` of its samples in the dataset, their ids, the seed, the model hash."""

    index: int
    positions: list[int]
    sample_ids: list[str]
    seed: int
    model_sha256: str | None


@dataclass(frozen=True)
class CascadeJob:
    """Everything a cascade needs but the samples (see :func:`~bastion.scan.cascade.run_cascade`)."""

    threat: ThreatModel
    attacks: list[EvasionAttack]
    seed: int
    batch_size: int


class ScanEngine(Protocol):
    """Runs a scan's cascade over all its samples and returns the merged result; maps independent jobs."""

    name: str

    def map(self, function: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, shared: tuple[Any, ...] = ()
            ) -> list[T]:
        """``[function(*shared, *job) for job in jobs]``, in order (``shared``: arguments every job takes)."""
        ...

    def run(self, model: Classifier, model_sha256: str | None, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor,
            sample_ids: Sequence[str], job: CascadeJob, *, targets: torch.Tensor | None = None,
            progress: ProgressCallback = no_progress) -> CascadeResult: ...


class LocalEngine:
    """The cascade in this process, over all samples at once (``shard_size=None``, the default) or shard by
    shard (``shard_size`` samples each, rounded up to whole batches; for tests of the merge)."""

    name = "local"

    def __init__(self, shard_size: int | None = None) -> None:
        if shard_size is not None and shard_size < 1:
            raise InputError(f"shard_size must be at least 1, got {shard_size}")
        self.shard_size = shard_size

    def map(self, function: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, shared: tuple[Any, ...] = ()
            ) -> list[T]:
        return [function(*shared, *job) for job in jobs]

    def run(self, model: Classifier, model_sha256: str | None, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor,
            sample_ids: Sequence[str], job: CascadeJob, *, targets: torch.Tensor | None = None,
            progress: ProgressCallback = no_progress) -> CascadeResult:
        if self.shard_size is None:
            return run_cascade(model, x, y, job.threat, job.attacks, keys=keys, seed=job.seed,
                               batch_size=job.batch_size, targets=targets, progress=progress)
        shards = make_shards(len(x), sample_ids, self.shard_size, job, model_sha256)
        results = self.map(run_shard, [(shard, job) for shard in shards],
                           shared=(model, model_sha256, x, y, keys, targets))
        return merge_cascades(results, shards, len(x))


class RayEngine:
    """The cascade sharded over a Ray cluster (``pip install 'bastion[ray]'``).

    Args:
        address: the cluster (``"ray://head:10001"``, ``"auto"``); ``None`` starts a local Ray instance.
        shards: how many shards (default: the cluster's CPU count, at least 1); each holds whole batches.
        max_retries: times Ray reruns a shard whose worker died (default 3).
        init_options: further ``ray.init`` keywords (e.g. ``num_cpus`` for a local instance).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, shards: int | None = None, max_retries: int = DEFAULT_RETRIES,
                 init_options: dict[str, Any] | None = None) -> None:
        if shards is not None and shards < 1:
            raise InputError(f"shards must be at least 1, got {shards}")
        if max_retries < 0:
            raise InputError(f"max_retries must be 0 or more, got {max_retries}")
        self.address, self.shards, self.max_retries = address, shards, max_retries
        self.init_options = dict(init_options or {})

    def run(self, model: Classifier, model_sha256: str | None, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor,
            sample_ids: Sequence[str], job: CascadeJob, *, targets: torch.Tensor | None = None,
            progress: ProgressCallback = no_progress) -> CascadeResult:
        ray = self._connect()
        count = self.shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
        shards = make_shards(len(x), sample_ids, -(-len(x) // count), job, model_sha256)
        results = self.map(run_shard, [(shard, job) for shard in shards],
                           shared=(model, model_sha256, x, y, keys, targets), progress=progress)
        return merge_cascades(results, shards, len(x))

    def map(self, function: Callable[..., T], jobs: Sequence[tuple[Any, ...]], *, shared: tuple[Any, ...] = (),
            progress: ProgressCallback = no_progress) -> list[T]:
        """``function(*shared, *job)`` for each job as a Ray task (``shared`` sent once through the object
        store), rerun up to ``max_retries`` times if its worker dies; the results in the order of ``jobs``."""
        ray = self._connect()
        remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(function)
        shared_refs = [ray.put(value) for value in shared]
        pending = {remote.remote(*shared_refs, *job): index for index, job in enumerate(jobs)}
        results: dict[int, T] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            results[pending.pop(done[0])] = ray.get(done[0])
            progress("tasks", len(results), len(jobs))
        return [results[index] for index in range(len(jobs))]

    def _connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, **self.init_options)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise CapabilityError(f"cannot reach the Ray cluster at {self.address or 'a new local instance'}: "
                                      f"{error}") from error
        return ray


def make_shards(count: int, sample_ids: Sequence[str], shard_size: int, job: CascadeJob,
                model_sha256: str | None) -> list[Shard]:
    """Consecutive shards of ``count`` samples, each a whole number of ``job.batch_size`` batches (the last
    may be short), so that every shard's batches are the ones the unsharded cascade forms on its samples."""
    if len(sample_ids) != count:
        raise InputError(f"need one sample id per sample: {count} samples, {len(sample_ids)} ids")
    size = max(job.batch_size, -(-shard_size // job.batch_size) * job.batch_size)
    return [Shard(index=number, positions=list(range(start, min(start + size, count))),
                  sample_ids=list(sample_ids[start: start + size]), seed=job.seed, model_sha256=model_sha256)
            for number, start in enumerate(range(0, count, size))]


def run_shard(model: Classifier, model_sha256: str | None, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor,
              targets: torch.Tensor | None, shard: Shard, job: CascadeJob) -> CascadeResult:
    """The cascade on one shard's samples (what a Ray worker runs)."""
    if model_sha256 != shard.model_sha256:
        raise InputError(f"shard {shard.index} is for the model {shard.model_sha256}, this worker holds "
                         f"{model_sha256}")
    index = torch.as_tensor(shard.positions, dtype=torch.int64)
    return run_cascade(model, x[index], y[index], job.threat, job.attacks, keys=keys[index], seed=job.seed,
                       batch_size=job.batch_size, targets=None if targets is None else targets[index])


def merge_cascades(results: Sequence[CascadeResult], shards: Sequence[Shard], count: int) -> CascadeResult:
    """One :class:`CascadeResult` for ``count`` samples from the results of ``shards`` (in the same order).

    Per-sample tensors are put back at their positions; each attack's points, breaks, queries and seconds
    are summed, and its ``robust_accuracy_after`` is recomputed over all samples (a sample is robust after
    an attack when its clean prediction was right and no attack up to this one broke it).
    """
    if len(results) != len(shards) or sum(len(shard.positions) for shard in shards) != count:
        raise InputError("the shards' results do not cover the samples once each")
    order = torch.as_tensor([p for shard in shards for p in shard.positions], dtype=torch.int64)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))

    def gather(name: str) -> torch.Tensor:
        return torch.cat([getattr(result, name) for result in results])[inverse]

    broken_by = [name for result in results for name in result.broken_by]
    broken_by = [broken_by[i] for i in inverse.tolist()]
    labels, clean = gather("labels"), gather("clean_predictions")
    correct = clean == labels
    summaries = []
    for position, first in enumerate(results[0].attacks):
        parts = [result.attacks[position] for result in results]
        earlier = {summary.name for summary in results[0].attacks[: position + 1]}
        robust_after = correct & torch.as_tensor([name not in earlier for name in broken_by], dtype=torch.bool)
        summaries.append(_merged_summary(first, parts, robust_after))
    return CascadeResult(labels, clean, gather("adversarial_predictions"), gather("robust"), gather("x_worst"),
                         broken_by, gather("distances"), gather("queries"), summaries)


def _merged_summary(first: AttackSummary, parts: Sequence[AttackSummary], robust_after: torch.Tensor
                    ) -> AttackSummary:
    """``first`` (an :class:`~bastion.core.records.AttackSummary`) with the counts of ``parts`` added up."""
    if first.skipped is not None:
        return first
    return first.model_copy(update={
        "points_attacked": sum(part.points_attacked for part in parts),
        "points_broken": sum(part.points_broken for part in parts),
        "queries": sum(part.queries for part in parts),
        "seconds": sum(part.seconds for part in parts),
        "robust_accuracy_after": float(robust_after.float().mean()) if len(robust_after) else 0.0})


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise CapabilityError("the Ray engine needs Ray: pip install 'bastion[ray]'") from error
    return ray
