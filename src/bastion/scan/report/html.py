"""The human-readable scan report: one self-contained HTML file (inline CSS, images as data URIs,
no network access needed to view it), rendered from ``templates/scan.html`` with autoescaping."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from bastion.core.records import AttackSummary, EpsResult, SanityFlag, ScanRecord
from bastion.scan.outcome import ScanOutcome
from bastion.scan.report._common import (
    class_name,
    format_eps,
    norm_symbol,
    percent,
    write_text_atomically,
)
from bastion.scan.report.advice import advise, explain_flag, weakest_classes
from bastion.scan.report.defense_view import defense_view
from bastion.scan.report.examples import example_views
from bastion.scan.report.plots import png_data_uri, robust_accuracy_plot
from bastion.scan.report.taxonomy import taxonomy_entries

_BACKTICKS = re.compile(r"`([^`]+)`")
#: Broken samples listed at the headline eps; the JSON record has all of them.
MAX_SAMPLES_LISTED = 100


@dataclass(frozen=True)
class FlagView:
    """A sanity flag with the eps it was raised at and a plain-words explanation."""

    eps: str
    flag: SanityFlag
    explanation: str


@dataclass(frozen=True)
class ClassLine:
    """One row of the per-class table: clean accuracy and robust accuracy at every eps."""

    label: int
    name: str
    count: int
    clean_accuracy: float
    robust: list[float | None]
    weak: bool


def write_html(outcome: ScanOutcome, path: str | Path) -> Path:
    """Render ``outcome`` as a single self-contained HTML file at ``path``.

    Raises:
        InputError: ``path`` cannot be written.
    """
    return write_text_atomically(Path(path), render_html(outcome))


def render_html(outcome: ScanOutcome) -> str:
    """The report as an HTML string (every value escaped by the template)."""
    return _environment().get_template("scan.html").render(**_context(outcome))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return report_environment()


def report_environment(*packages: str) -> Environment:
    """The Jinja environment of every bastion HTML report: autoescaping, strict undefined, the number
    filters. Templates are looked up in ``packages`` (``templates/`` of each) and then in the scan
    report's own, which holds the shared stylesheet ``_style.css``."""
    loaders = [PackageLoader(package, "templates") for package in (*packages, "bastion.scan.report")]
    environment = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["pct"] = percent
    environment.filters["eps"] = format_eps
    environment.filters["thousands"] = lambda value: f"{value:,}"
    environment.filters["short_id"] = lambda value: value[:12]
    environment.filters["inline_code"] = inline_code
    return environment


def inline_code(text: str) -> Markup:
    """Escape ``text``, then show its ```backticked``` parts as ``<code>``."""
    escaped = str(escape(text))
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", escaped))


def _context(outcome: ScanOutcome) -> dict[str, Any]:
    record = outcome.record
    return {
        "record": record,
        "headline": record.headline,
        "defense": defense_view(outcome.defense, record),
        "verdict": _verdict(record),
        "threat": _threat_summary(record),
        "advice": advise(record),
        "plot_uri": png_data_uri(robust_accuracy_plot(record)),
        "results": record.results,
        "attack_status": _attack_status,
        "class_name": partial(class_name, outcome.class_names),
        "class_eps": [format_eps(result.eps) for result in record.results],
        "class_lines": _class_lines(record),
        "examples": example_views(outcome.examples, outcome.class_names, record.config.bounds),
        "flags": _flag_views(record.results),
        "taxonomy": taxonomy_entries(record.atlas_ids, record.owasp_ids),
        "broken_samples": _broken_samples(record.headline),
        "config_items": [
            (key, json.dumps(value, ensure_ascii=False))
            for key, value in record.config.model_dump(mode="json").items()
        ],
    }


def _verdict(record: ScanRecord) -> str | None:
    """``"PASS"``/``"FAIL"`` against ``fail_under``, or ``None`` when no threshold was set."""
    if record.config.fail_under is None:
        return None
    return "PASS" if record.passed() else "FAIL"


def _threat_summary(record: ScanRecord) -> str:
    """E.g. ``"L∞ ε ≤ 0.03, white-box, untargeted, inputs in [0, 1]"``."""
    config = record.config
    low, high = config.bounds
    goal = "targeted" if config.targeted else "untargeted"
    return (f"{norm_symbol(config.norm)} ε ≤ {format_eps(record.headline.eps)}, "
            f"{config.access}-box access, {goal}, inputs in [{low:g}, {high:g}]")


def _attack_status(attack: AttackSummary) -> str:
    """What happened to an attack, in a word or a reason."""
    if attack.skipped:
        return f"skipped: {attack.skipped}"
    if attack.points_attacked == 0:
        return "nothing left to attack"
    return "ran"


def _class_lines(record: ScanRecord) -> list[ClassLine]:
    """Per-class rows keyed on the headline eps, with robust accuracy at every eps alongside."""
    headline = record.headline
    weak = {row.label for row in weakest_classes(headline)}
    if headline.per_class:
        lowest = min(headline.per_class, key=lambda row: row.robust_accuracy)
        if lowest.robust_accuracy < headline.robust_accuracy:
            weak.add(lowest.label)
    by_eps = [
        {row.label: row.robust_accuracy for row in result.per_class} for result in record.results
    ]
    return [
        ClassLine(
            label=row.label,
            name=row.name,
            count=row.count,
            clean_accuracy=row.clean_accuracy,
            robust=[robust.get(row.label) for robust in by_eps],
            weak=row.label in weak,
        )
        for row in headline.per_class
    ]


def _flag_views(results: list[EpsResult]) -> list[FlagView]:
    return [
        FlagView(format_eps(result.eps), flag, explain_flag(flag))
        for result in results
        for flag in result.flags
    ]


def _broken_samples(result: EpsResult) -> dict[str, Any]:
    broken = [sample for sample in result.samples if not sample.robust]
    return {"rows": broken[:MAX_SAMPLES_LISTED], "total": len(broken)}
