"""``privacy.json`` / ``extraction.json`` (canonical) and their self-contained HTML reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.scan.report.plots import png_data_uri
from bastion.scan.report.taxonomy import taxonomy_entries
from bastion.workflows.pages import write_record_and_page
from bastion.workflows.privacy_plots import extraction_curve_plot, inversion_plot, roc_plot
from bastion.workflows.privacy_records import ExtractionScanRecord, PrivacyDefenseRow, PrivacyRecord

#: A TPR at 1% (0.1%) FPR of this many times the FPR or more is reported as a leak (chance gives TPR = FPR).
LEAK_FACTOR = 3.0

_ATTACK_TITLES = {
    "loss-threshold": "loss threshold (Yeom et al. 2018)",
    "lira": "LiRA, online (Carlini et al. 2022)",
    "gap": "gap attack, labels only (Yeom et al. 2018)",
}


@dataclass(frozen=True)
class Advice:
    """One line of 'what to do next': a level (``critical``, ``warning``, ``ok``, ``note``) and the text."""

    level: str
    text: str


def write_privacy_reports(record: PrivacyRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``privacy.json`` (canonical) and ``privacy.html`` into ``out_dir``; returns both paths, keyed json/html."""
    return write_record_and_page(record, out_dir, "privacy", lambda folder: _privacy_context(record))


def write_extraction_reports(record: ExtractionScanRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``extraction.json`` (canonical) and ``extraction.html`` into ``out_dir``; returns both paths."""
    return write_record_and_page(record, out_dir, "extraction", lambda folder: _extraction_context(record))


def _privacy_context(record: PrivacyRecord) -> dict[str, Any]:
    inversion_png = inversion_plot(record.inversion, record.class_names, record.bounds) if record.inversion else None
    return {
        "record": record,
        "strongest": record.strongest,
        "attack_title": lambda name: _ATTACK_TITLES.get(name, name),
        "advice": privacy_advice(record),
        "roc_uri": png_data_uri(roc_plot(record.attacks)) if record.attacks else None,
        "inversion_uri": png_data_uri(inversion_png) if inversion_png else None,
        "steps_text": _steps_text,
        "taxonomy": taxonomy_entries(record.atlas_ids, record.owasp_ids),
        "endpoint_items": _items(record.endpoint or {}),
        "config_items": _items(record.config.model_dump(mode="json")),
    }


def _extraction_context(record: ExtractionScanRecord) -> dict[str, Any]:
    return {
        "record": record,
        "best": record.best,
        "advice": extraction_advice(record),
        "curve_uri": png_data_uri(extraction_curve_plot(record)),
        "steps_text": _steps_text,
        "taxonomy": taxonomy_entries(record.atlas_ids, record.owasp_ids),
        "endpoint_items": _items(record.endpoint or {}),
        "config_items": _items(record.config.model_dump(mode="json")),
    }


def privacy_advice(record: PrivacyRecord) -> list[Advice]:
    """What to do next, strongest finding first."""
    advice: list[Advice] = []
    strongest = record.strongest
    if strongest is not None:
        # Chance finds TPR = FPR; at 0.1% with fewer than 1,000 non-members the least FPR measurable is 1/M.
        floor = max(0.001, 1.0 / max(strongest.non_members, 1))
        ratios = (strongest.tpr_at_1pct / 0.01, strongest.tpr_at_01pct / floor)
        finding = (f"{strongest.attack} finds {strongest.tpr_at_1pct:.1%} of the members at 1% false positives "
                   f"({ratios[0]:.1f}x chance) and {strongest.tpr_at_01pct:.1%} at 0.1% ({ratios[1]:.1f}x chance); "
                   f"ROC AUC {strongest.auc:.3f}.")
        leaks = sum(ratio >= LEAK_FACTOR for ratio in ratios)
        if leaks:
            advice.append(Advice("critical" if leaks == 2 else "warning", f"{finding} Some training examples are "
                                 "identifiable with few false positives. Regularise (weight decay, dropout, early "
                                 "stopping, augmentation) or train with DP-SGD "
                                 "(bastion.defenses.training.fit_private), then scan again."))
        else:
            advice.append(Advice("ok", f"{finding} No attack here identifies members much better than chance at a "
                                 "low false-positive rate."))
    gap = record.train_accuracy - record.test_accuracy
    if gap > 0.05:
        advice.append(Advice("warning", f"Training accuracy {record.train_accuracy:.1%} against "
                             f"{record.test_accuracy:.1%} on the non-members: the model overfits, which is what "
                             "membership attacks exploit."))
    hardened = [row for row in record.defenses if row.defense != "none" and row.access != "labels"]
    base = next((row for row in record.defenses if row.defense == "none"), None)
    if base is not None and hardened:
        best = min(hardened, key=lambda row: (_worst_tpr(row), row.cost.distortion if row.cost else 1.0))
        advice.append(Advice("note", f"Of the defenses that keep scores, {best.defense} leaves the lowest TPR at 1% "
                             f"FPR ({_worst_tpr(best):.1%}, against {_worst_tpr(base):.1%} undefended); output "
                             "defenses change what an attacker reads, not what the model memorised."))
    advice.extend(Advice("note", note) for note in record.notes)
    return advice


def extraction_advice(record: ExtractionScanRecord) -> list[Advice]:
    """What to do next, strongest finding first."""
    best = record.best
    final = best.record
    accuracy = f" and {final.accuracy:.1%} accuracy" if final.accuracy is not None else ""
    level = "critical" if final.fidelity >= 0.9 else "warning" if final.fidelity >= 0.7 else "ok"
    advice = [Advice(level, f"{best.name}: a copy trained on {final.queries:,} queries agrees with the victim on "
                     f"{final.fidelity:.1%} of held-out inputs{accuracy} (the victim's accuracy: "
                     f"{record.victim_accuracy:.1%}). Limit and monitor queries per client (query budgets, "
                     "PRADA-style monitoring) and reveal less per answer.")]
    hardened = [row for row in record.defenses if row.defense != "none"]
    if hardened:
        lowest = min(hardened, key=lambda row: row.fidelity)
        advice.append(Advice("note", f"Lowest fidelity behind a defense: {lowest.defense}, {lowest.fidelity:.1%}. "
                             "Defenses that keep the top label cannot stop a copy learning from labels."))
    advice.extend(Advice("note", note) for note in record.notes)
    return advice


def _worst_tpr(row: PrivacyDefenseRow) -> float:
    """The higher TPR at 1% FPR of the row's loss and LiRA attacks."""
    return max(row.loss.tpr_at_1pct, row.lira.tpr_at_1pct if row.lira is not None else 0.0)


def _steps_text(steps: list[dict[str, Any]]) -> str:
    if not steps:
        return "—"
    return ", ".join(f"{step['name']}({', '.join(f'{k}={v}' for k, v in step['params'].items())})" for step in steps)


def _items(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, json.dumps(value, ensure_ascii=False)) for key, value in values.items()]
