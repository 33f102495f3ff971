"""``audit.json`` (canonical) and ``audit.html`` (self-contained) of ``bastion data audit``."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.workflows.audit import AuditColumn, AuditRecord
from bastion.workflows.pages import write_record_and_page

#: Samples shown per audit in the HTML; the JSON record has every score.
SHOWN_PER_AUDIT = 24

_MEANING = {
    "exact-duplicates": "byte-identical copies: the extra copies of a group are flagged, and every member "
                        "of a group whose labels disagree",
    "near-duplicates": "samples almost identical to another (cosine similarity of the pooled pixels at or "
                       "above the threshold); the first of each group is kept",
    "leakage": "test samples that duplicate or nearly duplicate a training sample: test accuracy overstates "
               "what the model learnt",
    "outliers": "far from their nearest neighbours (robust z-score of the k-nearest-neighbour distance)",
    "label-issues": "labels that out-of-sample predicted probabilities disagree with (cleanlab's confident "
                    "learning)",
    "spectral-signatures": "large projection on their class's top singular direction of the model's features "
                           "(Tran et al. 2018)",
    "activation-clustering": "in the smaller of two clusters of their class's features (Chen et al. 2018)",
    "poison-consensus": "suspected poison: the detectors combined, flagged under the false-positive budget",
}


@dataclass(frozen=True)
class SampleView:
    """One flagged sample in the report."""

    position: int
    sample_id: str
    location: str
    label: str
    score: float
    image: str | None


def write_audit_reports(record: AuditRecord, out_dir: str | Path, *, x: np.ndarray | None = None,
                        bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, Path]:
    """Write ``audit.json`` and ``audit.html`` into ``out_dir``; returns both paths.

    ``x``: the audited inputs ``(N, ...)``, aligned with ``record.ids``; image inputs (``(N, C, H, W)``
    with 1 or 3 channels) are shown as thumbnails next to the flagged samples.
    """
    return write_record_and_page(record, out_dir, "audit", lambda folder: _context(record, folder, x, bounds),
                                 indent=None)


def _context(record: AuditRecord, folder: Path, x: np.ndarray | None, bounds: tuple[float, float]) -> dict[str, Any]:
    consensus = record.column("poison-consensus")
    return {
        "record": record,
        "folder": str(folder),
        "total": len(record.ids),
        "rows": [_audit_row(column) for column in record.audits],
        "sections": [(column, _MEANING.get(column.name, ""), _flagged_views(record, column, x, bounds))
                     for column in record.audits if column.flagged_count],
        "per_class": _per_class(record, consensus) if consensus is not None else [],
        "selections": _selection_counts(record),
        "config_items": [(k, json.dumps(v)) for k, v in record.config.model_dump(mode="json").items()],
    }


def _audit_row(column: AuditColumn) -> dict[str, Any]:
    return {"name": column.name, "flagged": column.flagged_count, "over": len(column.scores),
            "what": "test samples" if column.ids is not None else "training samples",
            "meaning": _MEANING.get(column.name, ""),
            "params": ", ".join(f"{k} {v}" for k, v in column.params.items() if not isinstance(v, dict | list))}


def _flagged_views(record: AuditRecord, column: AuditColumn, x: np.ndarray | None,
                   bounds: tuple[float, float]) -> list[SampleView]:
    scores = np.asarray(column.scores)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if column.flags[i]][:SHOWN_PER_AUDIT]
    own = column.ids is None
    views = []
    for i in order:
        sample_id = record.ids[i] if own else column.ids[i]
        views.append(SampleView(
            position=i, sample_id=sample_id,
            location=(record.locations[i] or f"#{i}") if own else f"test #{i}",
            label=record.class_names[record.labels[i]] if own else "",
            score=float(scores[i]),
            image=_thumbnail(x[i], bounds) if own and x is not None else None))
    return views


def _thumbnail(sample: np.ndarray, bounds: tuple[float, float]) -> str | None:
    """A PNG data URI of one image sample ``(C, H, W)`` (1 or 3 channels), scaled up; ``None`` for other shapes."""
    if sample.ndim != 3 or sample.shape[0] not in (1, 3):
        return None
    from PIL import Image

    low, high = bounds
    pixels = np.clip((np.asarray(sample, dtype=np.float32) - low) / (high - low), 0, 1)
    pixels = (pixels * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    scale = max(1, 56 // max(image.size))
    image = image.resize((image.size[0] * scale, image.size[1] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _per_class(record: AuditRecord, consensus: AuditColumn) -> list[dict[str, Any]]:
    labels = np.asarray(record.labels)
    flags = np.asarray(consensus.flags)
    return [{"name": name, "count": int((labels == c).sum()), "flagged": int(flags[labels == c].sum())}
            for c, name in enumerate(record.class_names)]


def _selection_counts(record: AuditRecord) -> list[tuple[str, int | None]]:
    """Samples per quarantine selection; ``None`` when none of the selection's audits ran."""
    from bastion.workflows.audit import SELECTIONS

    return [(name, len(record.selection(name)) if any(record.column(a) for a in audits) else None)
            for name, audits in SELECTIONS.items()]
