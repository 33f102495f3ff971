"""Micro-batching: requests that reach the model while the event loop serves others share one forward pass.

A small model spends most of a one-image forward pass in per-call overhead, so evaluating the images of
eight concurrent requests together costs little more than one. When other inference requests are in flight, the
first to reach the model waits up to ``wait_seconds`` (1 ms by default), so that requests the loop is still reading
join its pass; the pass runs at once when as many requests have joined as it expects, or the batch is full.

A pass expects as many requests as are in flight now, or as the largest of the last :data:`RECENT_PASSES` passes
held, whichever is more; a pass whose wait runs out before they have joined makes it forget the earlier passes.
Counting only the requests in flight now split steady concurrent traffic into two alternating passes: with 8
clients that each send their next request on an answer, the first next request to arrive found nobody else in
flight (the others' answers were still on their way, their next requests not sent) and ran alone at once; the other
seven waited the whole 1 ms for it, since it was in flight though past the model. The split held for whole runs,
passes of 1 and 7 (or 2 and 6), and cost the gateway up to a third more CPU a request than passes of 8 (RESULTS.md,
issue 6). Expecting the recent passes' size, the first arrival waits for the others, and passes hold 7.9 to 8
requests on average. When overlaps are only occasional, a pass of two makes the next lone request wait
``wait_seconds`` once, in vain; its wait running out, the lone requests after it run at once again (sequential
traffic never waits).

Each request is still decided on its own rows (its detectors' flags, its decision). The probabilities of a
row can differ in the last bits from those of the same input evaluated alone, so the audit record of a
batched request names its batch (the input hashes in order and its place): ``bastion replay`` re-runs
that batch and compares bit for bit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from bastion.gateway.pipeline import Evaluation, PolicyPipeline

logger = logging.getLogger(__name__)
#: How many recent passes a pass expects as many requests as (the largest of them), until a wait runs out.
RECENT_PASSES = 4


@dataclass(frozen=True)
class BatchSlot:
    """Where a request sat in the forward pass that answered it.

    Attributes:
        inputs: the SHA-256 of each request's input in the batch, in order of concatenation.
        index: this request's place in ``inputs``.
    """

    inputs: list[str]
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "index": self.index}


@dataclass
class _Waiting:
    pipeline: PolicyPipeline
    x: torch.Tensor
    digest: str
    done: asyncio.Future[tuple[Evaluation, BatchSlot | None]]


class MicroBatcher:
    """Evaluates the requests queued during one turn of the event loop together.

    Args:
        max_instances: the most instances (rows) in one forward pass, at least 2 (default 64); a queue
            holding more is split, in arrival order, into several passes. Requests for different
            pipelines (a gateway that switched models while some were queued) never share a pass.
        wait_seconds: how long the first request of a pass waits for the requests it expects (see the module's
            docstring) to join it (default 0.001; 0 runs every pass as soon as the loop is free).
    """

    def __init__(self, *, max_instances: int = 64, wait_seconds: float = 0.001) -> None:
        if max_instances < 2:
            raise ValueError(f"max_instances must be at least 2 to batch anything, got {max_instances}")
        if not 0 <= wait_seconds <= 1:
            raise ValueError(f"wait_seconds must be between 0 and 1, got {wait_seconds}")
        self.max_instances = max_instances
        self.wait_seconds = wait_seconds
        self._waiting: list[_Waiting] = []
        self._rows = 0
        self._due: asyncio.TimerHandle | asyncio.Handle | None = None
        self._recent: deque[int] = deque(maxlen=RECENT_PASSES)  # requests in each of the last passes (see _run)

    def close(self) -> None:
        """Nothing to release: passes run on the event loop (a worker thread was measured slower: the hand-over
        cost more than overlapping the forward pass with the loop's other work gained)."""

    async def evaluate(self, pipeline: PolicyPipeline, x: torch.Tensor, digest: str, *, in_flight: int = 1
                       ) -> tuple[Evaluation, BatchSlot | None]:
        """Evaluate ``x`` ``(N, *input_shape)`` (validated by ``pipeline``) whose input hash is ``digest``; its
        evaluation, and its batch (``None`` when it ran alone). ``in_flight``: the requests the gateway is serving,
        this one included; the pass expects the most of it and the last passes' sizes (1: nobody to wait for)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(pipeline, x, digest, loop.create_future())
        self._waiting.append(waiting)
        self._rows += x.shape[0]
        expected = max([in_flight, *self._recent])
        everyone = len(self._waiting) >= expected or self._rows >= self.max_instances
        if self._due is None:
            self._due = loop.call_soon(self._run) if everyone or not self.wait_seconds else \
                loop.call_later(self.wait_seconds, self._run)
        elif everyone and isinstance(self._due, asyncio.TimerHandle):  # nobody else to wait for: run now
            self._due.cancel()
            self._due = loop.call_soon(self._run)
        return await waiting.done

    def _run(self) -> None:
        if isinstance(self._due, asyncio.TimerHandle):  # the wait ran out: what the last passes saw is not coming
            self._recent.clear()
        self._due = None
        queue, self._waiting, self._rows = self._waiting, [], 0
        self._recent.append(len(queue))
        for group in _groups(queue, self.max_instances):
            for waiting, answer in zip(group, self._evaluate(group), strict=True):
                if waiting.done.done():  # the client went away while it waited
                    continue
                if isinstance(answer, BaseException):
                    waiting.done.set_exception(answer)
                else:
                    waiting.done.set_result(answer)

    def _evaluate(self, group: list[_Waiting]) -> list[tuple[Evaluation, BatchSlot | None] | BaseException]:
        if len(group) == 1:
            return [_alone(group[0])]
        try:
            evaluations = group[0].pipeline.evaluate_batch([waiting.x for waiting in group])
        except Exception:  # noqa: BLE001 - one request's failure must not fail the others: run each alone
            logger.exception("a batch of %d requests failed; evaluating them one by one", len(group))
            return [_alone(waiting) for waiting in group]
        digests = [waiting.digest for waiting in group]
        return [(evaluation, BatchSlot(digests, index)) for index, evaluation in enumerate(evaluations)]


def _alone(waiting: _Waiting) -> tuple[Evaluation, None] | BaseException:
    try:
        return waiting.pipeline.evaluate(waiting.x), None
    except Exception as error:  # noqa: BLE001 - handed to the request that sent this input
        return error


def _groups(queue: list[_Waiting], most: int) -> Iterator[list[_Waiting]]:
    """``queue`` cut, in order, into groups of one pipeline and at most ``most`` rows (a request larger than
    that alone)."""
    group: list[_Waiting] = []
    rows = 0
    for waiting in queue:
        size = waiting.x.shape[0]
        if group and (rows + size > most or waiting.pipeline is not group[0].pipeline):
            yield group
            group, rows = [], 0
        group.append(waiting)
        rows += size
    if group:
        yield group
