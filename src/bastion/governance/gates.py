"""Release gates: hold one metric of an evidence record against a threshold.

Evidence is read as stored: the parsed JSON of ``scan.json``, ``privacy.json``, ``audit.json``... (a
``dict`` whose ``kind`` names the record type); :data:`~bastion.governance.metrics.METRICS` lists, per
evidence kind, the metrics a gate may name and how each is read.

:func:`evaluate_gates` checks every gate of a :class:`~bastion.governance.threat_model.ThreatDocument`
against a list of records: of several records of one kind, the newest (by ``created_at``) that holds
the value decides. A gate passes when the value is ``>= min`` (or ``<= max``); a gate no record answers
is ``missing``, which blocks a release as a failure does (:func:`gates_pass`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.core.errors import InputError
from bastion.governance.metrics import (
    AUDIT_CHECKS,
    EVIDENCE_KINDS,
    METRICS,
    PRODUCED_BY,
    SELECTORS,
    EvidenceKind,
    Measured,
    Missing,
    Reading,
)

if TYPE_CHECKING:
    from bastion.governance.threat_model import AttackPath, Gate, ThreatDocument

__all__ = ["AUDIT_CHECKS", "EVIDENCE_KINDS", "METRICS", "PRODUCED_BY", "SELECTORS", "EvidenceKind", "EvidenceSource",
           "GateResult", "Measured", "Missing", "created_at", "describe_gate", "evaluate_gates", "evidence_kind",
           "gates_pass", "load_evidence", "measure"]


# --- evidence files ------------------------------------------------------------------------------------


def evidence_kind(record: object, where: str = "the evidence record") -> str:
    """The ``kind`` of an evidence record (a parsed JSON object).

    Raises:
        InputError: not a JSON object, or no ``kind`` among :data:`EVIDENCE_KINDS`.
    """
    if not isinstance(record, dict):
        raise InputError(f"{where} is not a JSON object but {type(record).__name__}; give a bastion evidence "
                         "record such as scan.json or audit.json")
    kind = record.get("kind")
    if kind not in EVIDENCE_KINDS:
        found = "has no 'kind'" if kind is None else f"has kind {kind!r}"
        raise InputError(f"{where} {found}, so it is no bastion evidence record; known kinds: "
                         f"{', '.join(EVIDENCE_KINDS)}")
    return str(kind)


def load_evidence(path: str | Path) -> dict[str, Any]:
    """Read one evidence record (``scan.json``, ``privacy.json``...) as the ``dict`` it is stored as.

    Raises:
        InputError: the file cannot be read, is not JSON, or is no evidence record of a known kind.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read evidence file {path}: {error}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not JSON (line {error.lineno}, column {error.colno}: {error.msg}); give "
                         "the .json record a bastion command wrote") from None
    evidence_kind(record, str(path))
    return record


def created_at(record: dict[str, Any]) -> datetime | None:
    """The record's ``created_at`` as an aware UTC time (naive: UTC); ``None`` when absent or not an ISO time."""
    text = record.get("created_at")
    if not isinstance(text, str):
        return None
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        return None
    return time.replace(tzinfo=timezone.utc) if time.tzinfo is None else time.astimezone(timezone.utc)


# --- evaluation ----------------------------------------------------------------------------------------


class EvidenceSource(BaseModel):
    """The evidence record a gate's value came from."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="position in the evidence list given (0-based)")
    kind: str
    created_at: str | None = Field(default=None, description="the record's created_at, as stored")


class GateResult(BaseModel):
    """One gate of one attack path, checked against the evidence."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the attack path's id")
    risk: int = Field(description="the attack path's risk (likelihood x impact)")
    gate: str = Field(description="the gate's id")
    description: str = Field(description="the gate spelled out, e.g. 'scan: robust accuracy at eps 0.03 at least 0.5'")
    status: Literal["pass", "fail", "missing"]
    value: float | None = Field(default=None, description="the measured value; None when missing")
    bound: Literal["min", "max"] = Field(description="min: the value must be >= threshold; max: <= threshold")
    threshold: float
    detail: str | None = Field(default=None, description="where in the record the value came from (attack, epoch)")
    reason: str | None = Field(default=None, description="why the gate failed or is missing")
    source: EvidenceSource | None = Field(default=None, description="the record read; for a missing gate, the "
                                          "newest record of the kind (None when there was none)")


def describe_gate(gate: Gate) -> str:
    """The gate in words: ``"scan: robust accuracy at eps 0.03 (suite standard) at least 0.5"``."""
    metric = METRICS[gate.evidence][gate.metric]
    parts = [f"{gate.evidence}:", metric.words]
    phrases = {"eps": "at eps {}", "radius": "at radius {}", "fpr": "at FPR {}", "attack": "(attack {})",
               "suite": "(suite {})", "check": "for check {}"}
    for selector in metric.selectors:
        value = getattr(gate, selector)
        if value is not None:
            parts.append(phrases[selector].format(f"{value:g}" if isinstance(value, float) else value))
    bound, threshold = gate.bound
    parts.append(f"{'at least' if bound == 'min' else 'at most'} {threshold:g}")
    return " ".join(parts)


def measure(gate: Gate, record: dict[str, Any]) -> Reading:
    """The gate's metric read from one record of its kind; :class:`Missing` when the record does not hold it."""
    metric = METRICS[gate.evidence][gate.metric]
    try:
        reading = metric.read(record, gate)
    except (KeyError, TypeError, IndexError, ValueError) as error:
        return Missing(f"the {gate.evidence} record lacks the fields this metric reads ({type(error).__name__}: "
                       f"{error}); is it a record of this bastion version?")
    if isinstance(reading, Measured) and not math.isfinite(reading.value):
        return Missing(f"the {gate.evidence} record holds no finite value for it ({reading.value})")
    return reading


def _newest_first(evidence: list[dict[str, Any]], kind: str) -> list[int]:
    """Indexes of the records of ``kind``, newest ``created_at`` first; undated ones last, later given first."""
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    indexes = [index for index, record in enumerate(evidence) if record["kind"] == kind]
    return sorted(indexes, key=lambda i: (created_at(evidence[i]) is not None, created_at(evidence[i]) or oldest, i),
                  reverse=True)


def _source(evidence: list[dict[str, Any]], index: int) -> EvidenceSource:
    stamp = evidence[index].get("created_at")
    return EvidenceSource(index=index, kind=evidence[index]["kind"],
                          created_at=stamp if isinstance(stamp, str) else None)


def _check_gate(path: AttackPath, gate: Gate, evidence: list[dict[str, Any]]) -> GateResult:
    bound, threshold = gate.bound
    result = {"path": path.id, "risk": path.risk, "gate": gate.gate_id, "description": describe_gate(gate),
              "bound": bound, "threshold": threshold}
    candidates = _newest_first(evidence, gate.evidence)
    if not candidates:
        return GateResult(**result, status="missing",
                          reason=f"no {gate.evidence} evidence was given; produce it with {PRODUCED_BY[gate.evidence]}")
    missing: list[Missing] = []
    for index in candidates:
        reading = measure(gate, evidence[index])
        if isinstance(reading, Missing):
            missing.append(reading)
            continue
        passed = reading.value >= threshold if bound == "min" else reading.value <= threshold
        side = "below the minimum" if bound == "min" else "above the maximum"
        return GateResult(**result, status="pass" if passed else "fail", value=reading.value, detail=reading.detail,
                          reason=None if passed else f"{reading.value:g} is {side} {threshold:g}",
                          source=_source(evidence, index))
    older = len(candidates) - 1
    others = f" (nor did {older} older {gate.evidence} record{'s' if older > 1 else ''})" if older else ""
    return GateResult(**result, status="missing", reason=missing[0].reason + others,
                      source=_source(evidence, candidates[0]))


def evaluate_gates(document: ThreatDocument, evidence: list[dict[str, Any]]) -> list[GateResult]:
    """Check every gate of ``document`` against ``evidence``; one result per gate, attack paths by risk (highest first).

    Args:
        document: the threat document.
        evidence: evidence records as stored (parsed JSON objects, e.g. from :func:`load_evidence`), any order.
            Of several records of one kind, the newest by ``created_at`` that holds the gate's value decides;
            records without ``created_at`` count as older than dated ones, and among them a later one wins.

    Raises:
        InputError: an evidence item is no JSON object or has no known ``kind``.
    """
    for index, record in enumerate(evidence):
        evidence_kind(record, f"evidence record #{index}")
    return [_check_gate(path, gate, evidence) for path in document.ranked_paths() for gate in path.requires]


def gates_pass(results: list[GateResult]) -> bool:
    """True when every gate passed (a missing gate blocks as a failure does); True for no gates at all."""
    return all(result.status == "pass" for result in results)
