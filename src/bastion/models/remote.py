"""A live model endpoint as a :class:`~bastion.models.base.Classifier`, so a service can be red-teamed over HTTP.

It speaks the Open Inference Protocol v2 (KServe, Triton, bastion's gateway; see
:mod:`bastion.models.remote_protocol`). Failed requests are retried with backoff, ``Retry-After`` is
honoured, a query budget is never exceeded, and every answer is kept by the content hash of its
input (in memory, and in a journal file when given; see :mod:`bastion.models.remote_journal`), so an
attack stopped by a failing endpoint, a spent budget or a crash resumes without asking again.

Example:
    >>> model = RemoteClassifier("https://host/v2/models/digits", api_key=key, budget=10_000,
    ...                          journal="digits.answers.jsonl")
    >>> result = Square(queries=1000)(model, x, y, ThreatModel(eps=0.1, access="scores"))
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import torch

from bastion.core.errors import InputError, QueryBudgetExceeded, RemoteError
from bastion.core.threat import Access
from bastion.models.base import ModelInput, as_input
from bastion.models.remote_http import REDACTED, EndpointSession, RetryPolicy
from bastion.models.remote_journal import AnswerJournal, RawAnswer, sample_key
from bastion.models.remote_protocol import (
    INPUT_DATATYPES,
    AnswerKind,
    answer_kind,
    choose_input,
    choose_output,
    decode_answer,
    infer_request,
    looks_like_probabilities,
    parse_endpoint,
    parse_metadata,
)
from bastion.models.sklearn_adapter import MIN_PROBABILITY

ScoreKind = Literal["auto", "logits", "probabilities", "labels"]

_logger = logging.getLogger(__name__)


class RemoteClassifier:
    """A classifier served over HTTP (Open Inference Protocol v2): scores or labels, never gradients.

    Args:
        url: ``https://host/v2/models/NAME`` (optionally ``/versions/V``), or a base URL with ``model_name``.
        model_name, model_version: the model, when ``url`` does not name it.
        input_shape: per-sample shape, e.g. ``(1, 28, 28)``; default: from the model's metadata.
        num_classes: ``C``; default: from the metadata of a scores output. Required for a labels-only endpoint.
        bounds: valid input range, default ``(0, 1)``.
        access: ``"auto"`` (default: ``"scores"`` for a float output, ``"labels"`` for an integer one),
            ``"scores"``, or ``"labels"`` (only the top label is used even if the endpoint sends scores).
        score_kind: ``"auto"`` (default), ``"logits"`` or ``"probabilities"``. Auto: probabilities when the
            output's name mentions ``prob`` or the first answer's rows lie in [0, 1] and sum to 1, else logits.
        input_name, output: the tensor names; default: the model's only input and its first scores (else
            labels) output, from the metadata. The metadata is only asked for when something is left unknown.
        api_key: sent as ``Authorization: Bearer KEY``, or as the value of ``auth_header`` when that is another
            header (e.g. ``X-API-Key``). Never logged, never in ``repr`` or :meth:`get_params`.
        timeout, connect_timeout: seconds to wait for an answer (30) and for a connection (5).
        retry: the :class:`RetryPolicy` (default ``RetryPolicy()``).
        batch_size: samples per request (64); larger inputs are split.
        budget: the most samples this client may send (``None``: no limit). A call that would need more is
            refused before anything is sent. Samples served from memory or the journal cost nothing.
        journal: a JSON-lines file of answers, loaded when it exists and appended to after every batch.
        cache: serve a sample answered before from memory (default ``True``). Turn it off for an endpoint
            that answers at random (a randomised defense), where asking again is the point; a journal needs it.
        client: an ``httpx.Client`` to send with (proxies, TLS, a test transport); default: a new one.

    Attributes:
        used: samples the endpoint has answered through this client. served_from_cache: samples answered
        from memory or the journal. session: the :class:`EndpointSession` (``requests_sent`` counts HTTP
        requests, retries included).
        score_kind: ``"logits"``, ``"probabilities"`` (:meth:`logits` then returns their log, clamped at
        1e-12), ``"labels"``, or ``"auto"`` until the first answer decides.

    Raises:
        InputError: a bad URL or argument, a metadata that contradicts the arguments, or a journal written for
            another model or input format.
        RemoteError: the metadata, when needed, could not be read.

    Not thread-safe: give each thread its own client.
    """

    kind = "remote"

    def __init__(
        self,
        url: str,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        access: Literal["auto", "scores", "labels"] = "auto",
        score_kind: Literal["auto", "logits", "probabilities"] = "auto",
        input_name: str | None = None,
        output: str | None = None,
        api_key: str | None = None,
        auth_header: str = "Authorization",
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        batch_size: int = 64,
        budget: int | None = None,
        journal: str | Path | None = None,
        cache: bool = True,
        client: httpx.Client | None = None,
    ) -> None:
        self.endpoint = parse_endpoint(url, model_name, model_version)
        if access not in ("auto", "scores", "labels") or score_kind not in ("auto", "logits", "probabilities"):
            raise InputError(f"access must be auto, scores or labels and score_kind auto, logits or probabilities; "
                             f"got {access!r} and {score_kind!r}")
        self.batch_size = _count(batch_size, "batch_size", minimum=1)
        self.budget = None if budget is None else _count(budget, "budget", minimum=0)
        if journal is not None and not cache:
            raise InputError("a journal serves answers from memory; it needs cache=True")
        self.retry = RetryPolicy() if retry is None else retry
        self.session = EndpointSession(api_key=api_key, auth_header=auth_header, timeout=timeout,
                                       connect_timeout=connect_timeout, retry=self.retry, client=client)
        self.used = self.served_from_cache = 0
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.score_kind: ScoreKind = score_kind
        self._guessed_kind = False
        self.journal_path = None if journal is None else Path(journal).expanduser()
        try:
            self._resolve_signature(input_shape, num_classes, access, input_name, output)
            identity = {"model": self.endpoint.name, "version": self.endpoint.version,
                        "input_shape": self.input_shape, "input_datatype": self.input_datatype,
                        "num_classes": self.num_classes, "endpoint": self.endpoint.infer_url}
            self._answers = AnswerJournal(self.journal_path, identity) if cache else None
        except BaseException:
            self.session.close()
            raise

    # --- the Classifier protocol ---------------------------------------------------------------

    def logits(self, x: ModelInput) -> torch.Tensor:
        """Scores ``(N, C)`` for ``x`` ``(N, *input_shape)``, a tensor (the scores are on its device, in its float
        dtype) or a NumPy array (float32 scores); no gradients.

        With ``"scores"`` access these are the endpoint's logits, or the log of its probabilities; with
        ``"labels"`` access they are one-hot, and only their argmax may be used.

        Raises:
            InputError: a wrong per-sample shape, or NaN/infinite inputs (JSON cannot carry them).
            QueryBudgetExceeded: the samples not answered before are more than the budget left; nothing is sent.
            RemoteError: the endpoint failed after the retries, refused the request, or answered malformed
                data. Batches answered before the failure are kept (and journaled).
        """
        x = as_input(x, "logits")
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(f"input has per-sample shape {tuple(x.shape[1:])}; {self.endpoint.infer_url} expects "
                             f"{self.input_shape}")
        rows = x.detach().to("cpu", torch.float64).numpy().astype(INPUT_DATATYPES[self.input_datatype])
        if not np.isfinite(rows).all():
            raise InputError("inputs contain NaN or infinite values (after conversion to "
                             f"{self.input_datatype}); JSON cannot carry them")
        scores = self._to_scores(self._raw_answers(rows))
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        return torch.from_numpy(scores).to(device=x.device, dtype=dtype)

    def predict(self, x: ModelInput) -> torch.Tensor:
        """Labels ``(N,)`` int64 for a tensor or a NumPy array (see :func:`~bastion.models.base.as_input`)."""
        return self.logits(as_input(x, "predict")).argmax(dim=1)

    # --- reporting -------------------------------------------------------------------------------

    @property
    def remaining(self) -> int | None:
        """Samples that may still be sent, ``None`` without a budget."""
        return None if self.budget is None else self.budget - self.used

    def get_params(self) -> dict[str, Any]:
        """The configuration for the evidence record; the API key appears only as ``"<redacted>"``."""
        return {
            "url": self.endpoint.infer_url, "model": self.endpoint.name, "version": self.endpoint.version,
            "input_shape": list(self.input_shape), "num_classes": self.num_classes, "bounds": list(self.bounds),
            "access": self.access, "score_kind": self.score_kind, "input_name": self.input_name,
            "input_datatype": self.input_datatype, "output": self.output, "batch_size": self.batch_size,
            "budget": self.budget, "cache": self._answers is not None,
            "journal": None if self.journal_path is None else str(self.journal_path),
            "timeout": {"connect": self.session.connect_timeout, "read": self.session.timeout},
            "retry": self.retry.params(),
            "auth": {"header": self.session.auth_header, "api_key": REDACTED} if self.session.has_key else None,
        }

    def __repr__(self) -> str:
        key = REDACTED if self.session.has_key else None
        return (f"RemoteClassifier({self.endpoint.infer_url!r}, access={self.access!r}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes}, api_key={key!r})")

    def close(self) -> None:
        """Close the HTTP connections (not those of a ``client`` passed in)."""
        self.session.close()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- answers ---------------------------------------------------------------------------------

    def _raw_answers(self, rows: np.ndarray) -> list[RawAnswer]:
        """One raw answer per row: known ones from memory, the others asked in batches within the budget."""
        if self._answers is None:
            self._check_budget(len(rows))
            answered: list[RawAnswer] = []
            for start in range(0, len(rows), self.batch_size):
                kind, values = self._infer(rows[start : start + self.batch_size])
                self.used += len(values)
                answered.extend(values if kind == "scores" else (int(v) for v in values))
            return answered
        keys = [sample_key(row) for row in rows]
        missing: dict[str, int] = {}  # first row of each sample not answered yet, in order
        for index, key in enumerate(keys):
            if key not in self._answers and key not in missing:
                missing[key] = index
        self._check_budget(len(missing))
        todo = list(missing.items())
        done = 0
        try:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                kind, values = self._infer(rows[[index for _, index in chunk]])
                self._answers.add([key for key, _ in chunk], kind, values)
                self.used += len(chunk)
                done += len(chunk)
        except RemoteError as exc:
            kept = "memory" if self.journal_path is None else f"memory and in {self.journal_path}"
            raise RemoteError(f"{exc}. {done} of the {len(todo)} new samples of this call were answered before the "
                              f"failure; their answers are kept in {kept}, so a new run resumes after them",
                              url=exc.url, status=exc.status) from exc
        self.served_from_cache += len(rows) - len(missing)
        return [self._answers.get(key) for key in keys]  # type: ignore[misc]

    def _check_budget(self, count: int) -> None:
        remaining = self.remaining
        if remaining is not None and count > remaining:
            resume = ("resume later with the same journal" if self.journal_path is not None else
                      "give a --journal next time, so that the answers already paid for are kept and a later run "
                      "resumes")
            raise QueryBudgetExceeded(
                f"{count} new samples would go to {self.endpoint.infer_url} with {remaining} of the budget of "
                f"{self.budget} left; nothing was sent. Raise the budget, or {resume}"
            )

    def _infer(self, batch: np.ndarray) -> tuple[AnswerKind, np.ndarray]:
        url = self.endpoint.infer_url
        body = infer_request(batch, input_name=self.input_name, datatype=self.input_datatype, output_name=self.output)
        answer = self.session.request("POST", url, body)
        try:
            kind, values = decode_answer(answer, output_name=self.output, count=len(batch),
                                         num_classes=self.num_classes, url=url)
        except RemoteError as exc:
            raise RemoteError(self.session.redact(str(exc)), url=url, status=exc.status) from None
        if kind == "labels" and self.access == "scores":
            raise RemoteError(f"{url} answered labels, not scores; pass access='labels' to attack it label-only",
                              url=url, status=200)
        return kind, values

    def _to_scores(self, raw: list[RawAnswer]) -> np.ndarray:
        """``(N, C)`` float32: one-hot for labels access, logits or log-probabilities for scores."""
        if self.access == "labels":
            top = np.array([a if isinstance(a, int) else int(np.argmax(a)) for a in raw], dtype=np.int64)
            return np.eye(self.num_classes, dtype=np.float32)[top]
        if not all(isinstance(a, np.ndarray) for a in raw):
            raise RemoteError(f"the answers for {self.endpoint.infer_url} include labels (from an earlier run's "
                              "journal?) but this classifier reads scores; pass access='labels' or another journal",
                              url=self.endpoint.infer_url)
        scores = np.stack(raw) if raw else np.zeros((0, self.num_classes))
        if self.score_kind == "auto" and len(scores):
            self.score_kind = "probabilities" if looks_like_probabilities(scores) else "logits"
            self._guessed_kind = True
            _logger.info("%s answers %s%s", self.endpoint.infer_url, self.score_kind,
                         "; logits() returns their log" if self.score_kind == "probabilities" else "")
        elif self._guessed_kind and self.score_kind == "probabilities" and not looks_like_probabilities(scores):
            raise RemoteError(f"{self.endpoint.infer_url} first answered probabilities, now scores that are not; "
                              "pass score_kind='logits' or 'probabilities'", url=self.endpoint.infer_url, status=200)
        if self.score_kind == "probabilities":
            return np.log(np.clip(scores, MIN_PROBABILITY, None)).astype(np.float32)
        return scores.astype(np.float32)

    # --- metadata --------------------------------------------------------------------------------

    def _resolve_signature(self, input_shape: Sequence[int] | None, num_classes: int | None, access: str,
                           input_name: str | None, output: str | None) -> None:
        """Set the tensor names, shapes, ``num_classes`` and ``access``, asking the metadata only when needed."""
        self.input_name, self.output, self.input_datatype = input_name or "input", output, "FP32"
        shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        if shape is not None and num_classes is not None and access != "auto" and input_name is not None:
            self.input_shape, self.num_classes = shape, _count(num_classes, "num_classes", minimum=2)
            self.access: Access = "labels" if access == "labels" else "scores"
        else:
            url = self.endpoint.model_url
            inputs, outputs = parse_metadata(self.session.request("GET", url), url)
            model_input = choose_input(inputs, input_name, url)
            if model_input.datatype not in INPUT_DATATYPES:
                raise InputError(f"{url}: input {model_input.name!r} has datatype {model_input.datatype}; bastion "
                                 f"sends {', '.join(INPUT_DATATYPES)}")
            self.input_name, self.input_datatype = model_input.name, model_input.datatype
            self.input_shape = _input_shape(model_input.shape, shape, url)
            chosen = choose_output(outputs, output, url)
            found = answer_kind(chosen.datatype)
            if found is None or (access == "scores" and found == "labels"):
                raise InputError(f"{url}: output {chosen.name!r} ({chosen.datatype}) gives no scores; "
                                 "pass access='labels' or choose another output")
            self.output = chosen.name if output is not None or len(outputs) > 1 else None
            self.access = found if access == "auto" else access  # type: ignore[assignment]
            declared = chosen.shape[1] if found == "scores" and len(chosen.shape) == 2 and chosen.shape[1] > 0 else None
            if declared is not None and num_classes is not None and declared != num_classes:
                raise InputError(f"{url} declares {declared} classes but num_classes={num_classes}")
            if declared is None and num_classes is None:
                raise InputError(f"{url} does not say how many classes it has; pass num_classes")
            self.num_classes = _count(declared or num_classes, "num_classes", minimum=2)
            if self.score_kind == "auto" and found == "scores" and "prob" in chosen.name.lower():
                self.score_kind = "probabilities"
        if self.access == "labels":
            self.score_kind = "labels"


def _input_shape(declared: tuple[int, ...], given: tuple[int, ...] | None, url: str) -> tuple[int, ...]:
    """The per-sample shape from the metadata's ``[batch, ...]`` and/or the caller's value."""
    sample = declared[1:]
    if given is None:
        if not sample or any(d <= 0 for d in sample):
            raise InputError(f"{url} declares input shape {list(declared)}; pass input_shape (per sample)")
        return sample
    if sample and (len(sample) != len(given) or any(0 < d != g for d, g in zip(sample, given, strict=True))):
        raise InputError(f"{url} declares input shape {list(declared)} (batch first) but input_shape={given}")
    return given


def _count(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def endpoint_facts(classifier: object) -> dict[str, Any] | None:
    """A remote endpoint's settings (API key redacted) and the samples it was sent and answered from the cache,
    for an evidence record; ``None`` for any other classifier."""
    if not isinstance(classifier, RemoteClassifier):
        return None
    return {**classifier.get_params(), "samples_sent": classifier.used,
            "served_from_cache": classifier.served_from_cache}
