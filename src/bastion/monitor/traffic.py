"""Windows of a served model's traffic, read from the gateway's audit log for drift monitoring.

A logged prediction is a row of ``audit_records`` (what the model said: ``probabilities``, one list per
instance) joined on ``input_sha256`` with ``audit_inputs`` (the request's input array, ``(n, *sample_shape)``
as raw little-endian bytes). Refused requests, and requests without probabilities or input, are skipped.

Example::

    with open_database(home=home, create=False) as database, database.sessions() as session:
        reference, current = split_windows(session, model="digits", reference_first=500, current_last=200)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Select, String, cast, func, select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.monitor.drift import TrafficWindow
from bastion.storage.tables import AuditInputRow, AuditRecordRow

Logged = tuple[AuditRecordRow, AuditInputRow]


def read_window(session: Session, *, model: str | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int | None = None, newest: bool = False,
                name: str = "traffic") -> TrafficWindow:
    """The logged predictions of ``model`` between ``since`` (inclusive) and ``until`` (exclusive).

    Args:
        session: a session on bastion's database (see ``bastion.storage.database.open_database``).
        model: the served model's name; ``None`` accepts any, but the records must then name one model.
        since, until: the time range; naive times are UTC; ``None``: unbounded.
        limit: take at most this many records (requests, each of one or more instances); ``None``: all.
        newest: with ``limit``, take the newest records instead of the oldest.
        name: what the window is for (``"reference"``), for error messages.

    Returns:
        A ``TrafficWindow`` with one row per instance, labelled by its records' range and time span.

    Raises:
        InputError: no logged prediction matches, records of several models match and ``model`` is
            ``None``, or the records disagree in input shape or number of classes.
    """
    if limit is not None and limit < 1:
        raise InputError(f"the {name} window must take at least 1 record, got {limit}")
    order = AuditRecordRow.seq.desc() if newest else AuditRecordRow.seq
    statement = _logged(model, since, until).order_by(order).limit(limit)
    logged: list[Logged] = [(record, row) for record, row in session.execute(statement)]
    if not logged:
        _check_model(session, model)
        raise InputError(f"the {name} window has no logged predictions{_describe(model, since, until)}: check "
                         "--model and the time range (refused requests and errors are not counted)")
    return build_window(sorted(logged, key=lambda pair: pair[0].seq), model=model, name=name)


def split_windows(session: Session, *, model: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, reference_first: int | None = None,
                  current_last: int | None = None) -> tuple[TrafficWindow, TrafficWindow]:
    """A reference and a current window from one stretch of the audit log, without overlap.

    The reference is the oldest ``reference_first`` records between ``since`` and ``until``, the current
    window the newest ``current_last``; either left ``None`` takes half of the records (the older or the
    newer half).

    Raises:
        InputError: fewer records than the two windows ask for together, or no records at all (naming the
            models logged when ``model`` has none).
    """
    total = count_records(session, model=model, since=since, until=until)
    if total == 0:
        _check_model(session, model)
    if total < 2:
        raise InputError(f"the audit log holds {total} logged prediction(s){_describe(model, since, until)}; "
                         "a reference and a current window need at least 2")
    first = reference_first if reference_first is not None else total // 2
    last = current_last if current_last is not None else total // 2
    if first < 1 or last < 1:
        raise InputError("--reference-first and --current-last must be at least 1")
    if first + last > total:
        raise InputError(f"the windows ask for {first} + {last} records but the audit log holds {total}"
                         f"{_describe(model, since, until)}: ask for at most {total} in all, so they do not overlap")
    reference = read_window(session, model=model, since=since, until=until, limit=first, name="reference")
    current = read_window(session, model=model, since=since, until=until, limit=last, newest=True, name="current")
    return reference, current


def count_records(session: Session, *, model: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> int:
    """How many logged predictions (records, not instances) ``read_window`` would read."""
    subquery = _logged(model, since, until).with_only_columns(AuditRecordRow.seq).subquery()
    return int(session.scalar(select(func.count()).select_from(subquery)) or 0)


def logged_models(session: Session) -> list[str]:
    """The names of the models with logged predictions (what ``read_window`` reads), sorted."""
    statement = _logged(None, None, None).with_only_columns(AuditRecordRow.model).distinct()
    return sorted(session.scalars(statement))


def build_window(logged: Sequence[Logged], *, model: str | None = None, name: str = "traffic") -> TrafficWindow:
    """The ``TrafficWindow`` of ``(record, input)`` pairs in log order: inputs flattened, confidence the
    largest probability, prediction its class.

    Raises:
        InputError: the pairs are empty, name several models when ``model`` is ``None``, or disagree
            in input shape or number of classes.
    """
    if not logged:
        raise InputError(f"the {name} window has no logged predictions")
    models = sorted({record.model for record, _ in logged})
    if model is None and len(models) > 1:
        raise InputError(f"the {name} window holds predictions of {len(models)} models ({', '.join(models)}): "
                         "pass --model to compare one model's traffic")
    inputs, probabilities = zip(*(_instances(record, row) for record, row in logged), strict=True)
    _consistent([array.shape[1:] for array in inputs], "input shapes", name)
    _consistent([p.shape[1] for p in probabilities], "numbers of classes", name)
    x, p = np.concatenate(inputs), np.concatenate(probabilities)
    return TrafficWindow(
        inputs=x.reshape(len(x), -1), confidence=p.max(axis=1), predicted=p.argmax(axis=1),
        num_classes=p.shape[1], label=_label(logged), sample_shape=tuple(int(d) for d in x.shape[1:]),
        model=model or models[0], requests=len(logged))


def decode_input(row: AuditInputRow) -> np.ndarray:
    """The input array of a logged request, ``(n, *sample_shape)``, from its raw little-endian bytes.

    Raises:
        InputError: the dtype is not numeric, or the bytes do not hold an array of the stored shape.
    """
    try:
        dtype = np.dtype(row.dtype).newbyteorder("<")
    except TypeError:
        raise InputError(f"audit input {row.sha256[:12]} has an unknown dtype {row.dtype!r}") from None
    if dtype.kind not in "biuf":
        raise InputError(f"audit input {row.sha256[:12]} has dtype {row.dtype}: drift needs numeric inputs")
    shape = tuple(int(d) for d in row.shape)
    if len(shape) < 1 or len(row.data) != int(np.prod(shape)) * dtype.itemsize:
        raise InputError(f"audit input {row.sha256[:12]}: {len(row.data)} bytes do not hold a {dtype.name} array "
                         f"of shape {shape}; the audit log is damaged")
    return np.frombuffer(row.data, dtype=dtype).reshape(shape)


def to_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (naive times are taken as UTC, as the gateway logs them)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _logged(model: str | None, since: datetime | None, until: datetime | None) -> Select[Logged]:
    """Records with probabilities and a stored input, not refused, in the range."""
    statement = (
        select(AuditRecordRow, AuditInputRow)
        .join(AuditInputRow, AuditInputRow.sha256 == AuditRecordRow.input_sha256)
        .where(AuditRecordRow.decision != "refuse")
        # An ORM ``None`` in a JSON column is stored as JSON null; the cast is 'null' then, and NULL for SQL NULL.
        .where(cast(AuditRecordRow.probabilities, String) != "null")
    )
    if model is not None:
        statement = statement.where(AuditRecordRow.model == model)
    if since is not None:
        statement = statement.where(AuditRecordRow.time >= to_utc(since))
    if until is not None:
        statement = statement.where(AuditRecordRow.time < to_utc(until))
    return statement


def _check_model(session: Session, model: str | None) -> None:
    """Raise ``InputError`` naming the logged models when ``model`` has no logged prediction but others have (a
    misspelt name). An empty log is left to the caller's own message (how many predictions it needs)."""
    if model is None or count_records(session, model=model) > 0:
        return
    known = ", ".join(logged_models(session))
    if not known:
        return
    raise InputError(f"no logged predictions of model {model!r} in the audit log (models logged: {known}); pass one "
                     "of them to --model (refused requests and errors are not counted)")


def _instances(record: AuditRecordRow, row: AuditInputRow) -> tuple[np.ndarray, np.ndarray]:
    """A record's inputs ``(n, *sample_shape)`` as float32 and its probabilities ``(n, C)``."""
    inputs = decode_input(row).astype(np.float32)
    try:
        probabilities = np.asarray(record.probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        probabilities = np.empty(0)
    if probabilities.ndim == 1 and len(inputs) == 1:
        probabilities = probabilities[None, :]
    if probabilities.ndim != 2 or probabilities.shape[1] < 2 or len(probabilities) != len(inputs):
        raise InputError(f"request {record.request_id}: its probabilities (shape {probabilities.shape}) do not match "
                         f"its {len(inputs)} input(s); the audit log is damaged")
    return inputs, probabilities


def _consistent(values: list[object], what: str, name: str) -> None:
    distinct = sorted({str(value) for value in values})
    if len(distinct) > 1:
        raise InputError(f"the {name} window mixes {what} ({', '.join(distinct)}): the model changed; narrow the "
                         "time range to one version")


def _label(logged: Sequence[Logged]) -> str:
    """E.g. ``"requests 1-120, 2026-11-20 08:00 to 2026-11-20 17:59 UTC"``."""
    first, last = logged[0][0], logged[-1][0]
    start, end = to_utc(first.time), to_utc(last.time)
    return f"requests {first.seq}-{last.seq}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def _describe(model: str | None, since: datetime | None, until: datetime | None) -> str:
    """`` for model 'digits' from ... until ...`` for messages ('' when unconstrained)."""
    parts = [f" for model {model!r}"] if model else []
    if since is not None:
        parts.append(f" from {to_utc(since):%Y-%m-%d %H:%M:%S} UTC")
    if until is not None:
        parts.append(f" until {to_utc(until):%Y-%m-%d %H:%M:%S} UTC")
    return "".join(parts)
