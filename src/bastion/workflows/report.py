"""JSON evidence and self-contained HTML reports of ``bastion certify`` and ``bastion harden``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bastion.core.evidence import CertifiedSample, CertifyRecord, HardenRecord
from bastion.scan.report._common import norm_symbol
from bastion.scan.report.plots import png_data_uri
from bastion.workflows.pages import write_record_and_page
from bastion.workflows.plots import certified_curve_plot, training_history_plot

#: Uncertified samples listed in the HTML; the JSON record has all of them.
MAX_SAMPLES_LISTED = 100

#: Training-record fields shown elsewhere in the harden report (or not worth a row).
_NOT_CONFIGURATION = ("history", "kind", "schema_version", "teacher")

_METHOD_TITLES = {
    "smoothing": "randomized smoothing",
    "ibp": "interval bound propagation",
    "crown": "CROWN linear bounds",
    "crown-ibp": "CROWN-IBP bounds",
}


def write_certify_reports(record: CertifyRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``certify.json`` (canonical) and ``certify.html`` into ``out_dir``; returns both paths."""
    return write_record_and_page(record, out_dir, "certify", lambda folder: _certify_context(record))


def write_harden_reports(record: HardenRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``harden.json`` (canonical) and ``harden.html`` into ``out_dir``; returns both paths."""
    return write_record_and_page(record, out_dir, "harden", lambda folder: _harden_context(record))


def _certify_context(record: CertifyRecord) -> dict[str, Any]:
    config = record.config
    uncertified = [s for s in record.samples if not _certified(s, config.radius)]
    return {
        "record": record,
        "norm": norm_symbol(config.norm),
        "method_title": _METHOD_TITLES[config.method],
        "method_summary": _method_summary(record),
        "explanation": _explanation(record),
        "plot_uri": png_data_uri(certified_curve_plot(record)),
        "uncertified": uncertified[:MAX_SAMPLES_LISTED],
        "uncertified_total": len(uncertified),
        "why": lambda sample: _why_not_certified(sample, config.radius),
        "config_items": _items(config.model_dump(mode="json")),
    }


def _certified(sample: CertifiedSample, radius: float) -> bool:
    return not sample.abstained and sample.prediction == sample.label and sample.radius >= radius


def _why_not_certified(sample: CertifiedSample, radius: float) -> str:
    if sample.abstained:
        return "abstained: no class was significantly more likely than the rest"
    if sample.prediction != sample.label:
        return "misclassified"
    if sample.radius == 0:
        return f"correct, but not certified at {radius:.4g}"
    return f"certified only to radius {sample.radius:.4g}, below {radius:.4g}"


def _method_summary(record: CertifyRecord) -> str:
    config = record.config
    if config.method == "smoothing":
        mode = "sequential (stops once decided)" if config.sequential else "fixed sample size"
        return (f"Gaussian smoothing, σ = {config.sigma:g}, n = {config.n:,}, n0 = {config.n0:,}, "
                f"α = {config.alpha:g}, {mode}")
    return f"{_METHOD_TITLES[config.method]} over the network, {norm_symbol(config.norm)} ball"


def _explanation(record: CertifyRecord) -> str:
    config = record.config
    if config.method == "smoothing":
        return (f"A certificate here is a statement about the smoothed classifier — the majority vote of the model "
                f"under Gaussian noise of σ = {config.sigma:g} — not the model alone: with probability at least "
                f"1 − α = {1 - config.alpha:.4g} per sample, no {norm_symbol(config.norm)} perturbation smaller "
                "than the certified radius changes that vote. Deploying the certificate means deploying the vote.")
    return ("A certificate here is a proof about the model itself: sound bounds on every logit over the whole "
            f"{norm_symbol(config.norm)} ball show that the true class wins for every input in it. No attack, "
            "however strong, can break a certified sample.")


def _harden_context(record: HardenRecord) -> dict[str, Any]:
    history = record.training.get("history") or []
    png = training_history_plot(history)
    config = {"method": record.method, "norm": record.norm, "eps": record.eps}
    config |= {key: value for key, value in record.training.items() if key not in _NOT_CONFIGURATION}
    return {
        "record": record,
        "training": record.training,
        "norm": norm_symbol(record.norm),
        "history_uri": png_data_uri(png) if png else None,
        "duration": _duration,
        "change": _change,
        "config_items": _items(config),
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _change(before: float | None, after: float) -> str:
    if before is None:
        return "—"
    return f"{100 * (after - before):+.1f} points"


def _items(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, json.dumps(value, ensure_ascii=False)) for key, value in values.items()]
