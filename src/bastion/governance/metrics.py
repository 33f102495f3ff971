"""The metrics a release gate can read: per evidence kind, its metrics, the selectors each needs, and how
each is read from a record as stored (the parsed JSON of ``scan.json``, ``privacy.json``, ``audit.json``...).

A metric that a record does not hold (the scan did not run that eps, the audit skipped the poison check)
reads as :class:`Missing` with the reason, never as an exception. ``bastion.governance.gates`` evaluates
a threat document's gates with these readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from bastion.governance.threat_model import Gate

EvidenceKind = Literal["scan", "defense-scan", "certify", "harden", "training", "privacy", "extraction", "audit",
                       "drift"]
#: Every evidence kind a gate can read, in the order of a model's life.
EVIDENCE_KINDS: tuple[str, ...] = get_args(EvidenceKind)
Selector = Literal["eps", "suite", "radius", "attack", "fpr", "check"]
SELECTORS: tuple[str, ...] = get_args(Selector)

#: How each kind of evidence is produced (said when a gate finds none).
PRODUCED_BY: dict[str, str] = {
    "scan": "'bastion scan --model M --data D --eps ... --out DIR' (DIR/scan.json)",
    "defense-scan": "'bastion scan --model M --data D --preprocess SPEC --out DIR' (DIR/defense.json)",
    "certify": "'bastion certify --model M --data D --out DIR' (DIR/certify.json)",
    "harden": "'bastion harden ... --out DIR' (DIR/harden.json)",
    "training": "a training record, e.g. 'bastion train --dp-*' (WEIGHTS.privacy.json)",
    "privacy": "'bastion scan --model M --data D --suite privacy --train-data T --out DIR' (DIR/privacy.json)",
    "extraction": "'bastion scan --model M --data D --suite extraction --out DIR' (DIR/extraction.json)",
    "audit": "'bastion data audit DATA --out DIR' (DIR/audit.json)",
    "drift": "'bastion monitor report --out DIR' (DIR/drift.json)",
}

#: Values of an audit gate's ``check``, and the audit columns (``AuditRecord.audits[].name``) each counts.
AUDIT_CHECKS: dict[str, tuple[str, ...]] = {
    "poison": ("poison-consensus",),
    "poison-consensus": ("poison-consensus",),
    "spectral-signatures": ("spectral-signatures",),
    "activation-clustering": ("activation-clustering",),
    "label": ("label-issues",),
    "label-issues": ("label-issues",),
    "duplicates": ("exact-duplicates", "near-duplicates"),
    "exact-duplicates": ("exact-duplicates",),
    "near-duplicates": ("near-duplicates",),
    "outliers": ("outliers",),
    "leakage": ("leakage",),
}


@dataclass(frozen=True)
class Measured:
    """A metric's value, with a note on where in the record it came from (e.g. the attack), if any."""

    value: float
    detail: str | None = None


@dataclass(frozen=True)
class Missing:
    """Why a record does not hold a metric, in words (``"the scan evaluated eps 0.05, 0.1, not 0.2"``)."""

    reason: str


Reading = Measured | Missing
Extractor = Callable[[dict[str, Any], "Gate"], Reading]


@dataclass(frozen=True)
class Metric:
    """One number a gate can read from one kind of evidence record.

    Attributes:
        words: what it measures, for the gate spelled out (``"robust accuracy"``).
        read: ``read(record, gate) -> Measured | Missing``; may raise ``KeyError``/``TypeError``/``IndexError``
            on a malformed record, which :func:`measure` turns into :class:`Missing`.
        required: selectors the gate must give. optional: selectors it may give.
    """

    words: str
    read: Extractor
    required: tuple[Selector, ...] = ()
    optional: tuple[Selector, ...] = ()

    @property
    def selectors(self) -> tuple[Selector, ...]:
        return self.required + self.optional


# --- small readers -------------------------------------------------------------------------------------


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _numbers(values: Iterable[float]) -> str:
    return ", ".join(f"{value:g}" for value in values)


def _row_at(rows: list[dict[str, Any]], key: str, wanted: float, what: str) -> dict[str, Any] | Missing:
    """The row whose ``key`` equals ``wanted``, or why there is none."""
    row = next((row for row in rows if _same(float(row[key]), wanted)), None)
    if row is None:
        return Missing(f"{what} evaluated {key} {_numbers(float(r[key]) for r in rows) or 'none'}, not {wanted:g}")
    return row


def _suite_differs(record: dict[str, Any], gate: Gate, what: str) -> Missing | None:
    suite = record["config"]["suite"]
    if gate.suite is not None and suite != gate.suite:
        return Missing(f"{what} ran suite {suite!r}, not {gate.suite!r}")
    return None


def _value(number: Any, detail: str | None = None) -> Reading:
    if number is None:
        return Missing("the record holds no value for it (null)")
    return Measured(float(number), detail)


# --- scan, harden, defense-scan ------------------------------------------------------------------------


def _scan_robust_accuracy(record: dict[str, Any], gate: Gate, what: str = "the scan") -> Reading:
    wrong_suite = _suite_differs(record, gate, what)
    if wrong_suite is not None:
        return wrong_suite
    row = _row_at(record["results"], "eps", gate.eps, what)
    return row if isinstance(row, Missing) else _value(row["robust_accuracy"])


def _scan_clean_accuracy(record: dict[str, Any], gate: Gate, what: str = "the scan") -> Reading:
    wrong_suite = _suite_differs(record, gate, what)
    if wrong_suite is not None:
        return wrong_suite
    if not record["results"]:
        return Missing(f"{what} holds no results")
    return _value(record["results"][0]["clean_accuracy"])


def _scan_sanity_warnings(record: dict[str, Any], gate: Gate) -> Reading:
    rows = record["results"]
    if gate.eps is not None:
        row = _row_at(rows, "eps", gate.eps, "the scan")
        if isinstance(row, Missing):
            return row
        rows = [row]
    return Measured(float(sum(flag["severity"] == "warning" for row in rows for flag in row["flags"])))


def _harden_robust_accuracy(record: dict[str, Any], gate: Gate) -> Reading:
    return _scan_robust_accuracy(record["after"], gate, "the scan after hardening")


def _harden_clean_accuracy(record: dict[str, Any], gate: Gate) -> Reading:
    return _scan_clean_accuracy(record["after"], gate, "the scan after hardening")


def _harden_clean_accuracy_lost(record: dict[str, Any], gate: Gate) -> Reading:
    cost = record["cost"]
    if cost["clean_accuracy_before"] is None:
        return Missing("the hardening run had no model before it (trained from scratch): nothing to compare")
    return Measured(float(cost["clean_accuracy_before"]) - float(cost["clean_accuracy_after"]))


def _defense_adaptive_robust_accuracy(record: dict[str, Any], gate: Gate) -> Reading:
    row = _row_at(record["comparison"], "eps", gate.eps, "the defended scan")
    return row if isinstance(row, Missing) else _value(row["adaptive_robust_accuracy"])


def _defense_gap(record: dict[str, Any], gate: Gate) -> Reading:
    rows = record["comparison"]
    if gate.eps is not None:
        row = _row_at(rows, "eps", gate.eps, "the defended scan")
        return row if isinstance(row, Missing) else _value(row["gap"])
    if not rows:
        return Missing("the defended scan compared no eps")
    worst = max(rows, key=lambda row: float(row["gap"]))
    return Measured(float(worst["gap"]), f"largest at eps {float(worst['eps']):g}")


# --- certify, training ---------------------------------------------------------------------------------


def _certified_accuracy(record: dict[str, Any], gate: Gate) -> Reading:
    if gate.radius is None or _same(float(record["config"]["radius"]), gate.radius):
        return _value(record["certified_accuracy"])
    point = _row_at(record["curve"], "radius", gate.radius, "the certification curve")
    return point if isinstance(point, Missing) else _value(point["certified_accuracy"])


def _field(name: str) -> Extractor:
    """A metric that is one top-level number of the record."""

    def read(record: dict[str, Any], gate: Gate) -> Reading:
        return _value(record[name])

    return read


def _training_val_robust(record: dict[str, Any], gate: Gate) -> Reading:
    history = record["history"]
    best = record.get("best_epoch")
    if best is not None:
        epoch = next((row for row in history if row["epoch"] == best), None)
        if epoch is not None and epoch["val_robust"] is not None:
            return Measured(float(epoch["val_robust"]), f"best epoch {best}")
    measured = [row for row in history if row.get("val_robust") is not None]
    if not measured:
        return Missing("the training run measured no robust validation accuracy (train with early stopping)")
    return Measured(float(measured[-1]["val_robust"]), f"epoch {measured[-1]['epoch']}")


def _training_dp_epsilon(record: dict[str, Any], gate: Gate) -> Reading:
    privacy = record.get("privacy")
    if privacy is None:
        return Missing("the training run was not differentially private (no accountant's epsilon)")
    return Measured(float(privacy["epsilon"]), f"delta {float(privacy['delta']):g}")


# --- privacy, extraction -------------------------------------------------------------------------------


def _chosen(items: list[dict[str, Any]], gate: Gate, names: Callable[[dict[str, Any]], tuple[str, ...]],
            what: str) -> list[dict[str, Any]] | Missing:
    """The items a gate's ``attack`` names (all items without one), or why there are none."""
    chosen = items if gate.attack is None else [item for item in items if gate.attack in names(item)]
    if not chosen:
        ran = ", ".join(dict.fromkeys(names(item)[0] for item in items)) or "none"
        wanted = f", not {gate.attack!r}" if gate.attack is not None else ""
        return Missing(f"{what} ran {ran}{wanted}")
    return chosen


def _tpr_at(attack: dict[str, Any], fpr: float) -> float:
    """TPR at FPR <= ``fpr``: the record's own figure at 1% and 0.1%, else read off its (thinned) ROC curve."""
    if _same(fpr, 0.01):
        return float(attack["tpr_at_1pct"])
    if _same(fpr, 0.001):
        return float(attack["tpr_at_01pct"])
    return max(float(t) for f, t in zip(attack["fpr"], attack["tpr"], strict=True) if float(f) <= fpr + 1e-12)


def _membership_tpr(record: dict[str, Any], gate: Gate) -> Reading:
    attacks = _chosen(record["attacks"], gate, lambda item: (item["attack"],), "the privacy scan's attacks: it")
    if isinstance(attacks, Missing):
        return attacks
    best = max(attacks, key=lambda attack: _tpr_at(attack, gate.fpr))
    return Measured(_tpr_at(best, gate.fpr), f"attack {best['attack']}")


def _membership_auc(record: dict[str, Any], gate: Gate) -> Reading:
    attacks = _chosen(record["attacks"], gate, lambda item: (item["attack"],), "the privacy scan's attacks: it")
    if isinstance(attacks, Missing):
        return attacks
    best = max(attacks, key=lambda attack: float(attack["auc"]))
    return Measured(float(best["auc"]), f"attack {best['attack']}")


def _train_test_gap(record: dict[str, Any], gate: Gate) -> Reading:
    return Measured(float(record["train_accuracy"]) - float(record["test_accuracy"]))


def _empirical_epsilon(record: dict[str, Any], gate: Gate) -> Reading:
    bound = record.get("epsilon")
    if bound is None:
        return Missing("the privacy scan computed no empirical epsilon")
    return Measured(float(bound["epsilon"]), f"attack {record.get('epsilon_attack') or '?'}")


def _run_names(run: dict[str, Any]) -> tuple[str, ...]:
    return (run["name"], run["strategy"])


def _extraction_fidelity(record: dict[str, Any], gate: Gate) -> Reading:
    runs = _chosen(record["runs"], gate, _run_names, "the extraction scan: it")
    if isinstance(runs, Missing):
        return runs
    best = max(runs, key=lambda run: float(run["record"]["fidelity"]))
    return Measured(float(best["record"]["fidelity"]), best["name"])


def _extraction_copy_accuracy(record: dict[str, Any], gate: Gate) -> Reading:
    runs = _chosen(record["runs"], gate, _run_names, "the extraction scan: it")
    if isinstance(runs, Missing):
        return runs
    measured = [run for run in runs if run["record"].get("accuracy") is not None]
    if not measured:
        return Missing("the extraction scan measured no copy accuracy (its evaluation data had no labels)")
    best = max(measured, key=lambda run: float(run["record"]["accuracy"]))
    return Measured(float(best["record"]["accuracy"]), best["name"])


# --- audit, drift --------------------------------------------------------------------------------------


_POISON_CHECKS = ("poison", "poison-consensus", "spectral-signatures", "activation-clustering")


def _audit_flags(record: dict[str, Any], check: str) -> tuple[list[bool], str] | Missing:
    """Per audited sample, whether ``check`` flagged it (any of its columns), and the columns read."""
    wanted = AUDIT_CHECKS[check]
    columns = [column for column in record["audits"] if column["name"] in wanted]
    if not columns:
        ran = ", ".join(column["name"] for column in record["audits"]) or "no check"
        # The audit notes why it skipped the checks that need more input (poison: a model; leakage: test data).
        topic = "leakage" if wanted == ("leakage",) else "poison" if check in _POISON_CHECKS else None
        notes = [note for note in record.get("notes") or [] if topic is not None and topic in note.lower()]
        return Missing(f"the audit ran {ran}, not {' or '.join(wanted)}" + (f" ({' '.join(notes)})" if notes else ""))
    # The columns of one check cover the same samples: a sample two of them flag counts once.
    flags = [any(bool(flag) for flag in row) for row in zip(*(column["flags"] for column in columns), strict=True)]
    return flags, " + ".join(column["name"] for column in columns)


def _audit_flagged(record: dict[str, Any], gate: Gate) -> Reading:
    flags = _audit_flags(record, gate.check)
    return flags if isinstance(flags, Missing) else Measured(float(sum(flags[0])), flags[1])


def _audit_flagged_share(record: dict[str, Any], gate: Gate) -> Reading:
    flags = _audit_flags(record, gate.check)
    if isinstance(flags, Missing):
        return flags
    if not flags[0]:
        return Missing(f"the audit's {flags[1]} column covers no samples")
    return Measured(sum(flags[0]) / len(flags[0]), f"{flags[1]}, {sum(flags[0])} of {len(flags[0])}")


def _drift_detected(record: dict[str, Any], gate: Gate) -> Reading:
    return Measured(1.0 if record["alerts"] else 0.0)


def _count(name: str) -> Extractor:
    """A metric that is the length of one top-level list of the record."""

    def read(record: dict[str, Any], gate: Gate) -> Reading:
        return Measured(float(len(record[name])))

    return read


#: Per evidence kind, the metrics a gate may name.
METRICS: dict[str, dict[str, Metric]] = {
    "scan": {
        "robust_accuracy": Metric("robust accuracy", _scan_robust_accuracy, ("eps",), ("suite",)),
        "clean_accuracy": Metric("clean accuracy", _scan_clean_accuracy, (), ("suite",)),
        "sanity_warnings": Metric("sanity warnings (signs of gradient masking)", _scan_sanity_warnings, (), ("eps",)),
    },
    "defense-scan": {
        "adaptive_robust_accuracy": Metric("robust accuracy under the adaptive attack",
                                           _defense_adaptive_robust_accuracy, ("eps",)),
        "gap": Metric("plain minus adaptive robust accuracy", _defense_gap, (), ("eps",)),
    },
    "harden": {
        "robust_accuracy": Metric("robust accuracy after hardening", _harden_robust_accuracy, ("eps",), ("suite",)),
        "clean_accuracy": Metric("clean accuracy after hardening", _harden_clean_accuracy, (), ("suite",)),
        "clean_accuracy_lost": Metric("clean accuracy given up", _harden_clean_accuracy_lost),
    },
    "certify": {
        "certified_accuracy": Metric("certified accuracy", _certified_accuracy, (), ("radius",)),
        "clean_accuracy": Metric("clean accuracy", _field("clean_accuracy")),
        "abstain_rate": Metric("abstain rate", _field("abstain_rate")),
    },
    "training": {
        "train_accuracy": Metric("training accuracy", _field("train_accuracy")),
        "val_robust": Metric("robust validation accuracy", _training_val_robust),
        "dp_epsilon": Metric("DP-SGD epsilon", _training_dp_epsilon),
    },
    "privacy": {
        "membership_tpr": Metric("membership-inference TPR", _membership_tpr, ("fpr",), ("attack",)),
        "membership_auc": Metric("membership-inference AUC", _membership_auc, (), ("attack",)),
        "train_test_gap": Metric("train-test accuracy gap", _train_test_gap),
        "empirical_epsilon": Metric("empirical epsilon lower bound", _empirical_epsilon),
    },
    "extraction": {
        "fidelity": Metric("stolen copy's fidelity (agreement with the model)", _extraction_fidelity, (),
                           ("attack",)),
        "copy_accuracy": Metric("stolen copy's accuracy", _extraction_copy_accuracy, (), ("attack",)),
    },
    "audit": {
        "flagged": Metric("flagged samples", _audit_flagged, ("check",)),
        "flagged_share": Metric("share of samples flagged", _audit_flagged_share, ("check",)),
    },
    "drift": {
        "alerts": Metric("drift alerts", _count("alerts")),
        "drift_detected": Metric("drift detected (1 yes, 0 no)", _drift_detected),
        "drifted_features": Metric("drifted input features", _count("drifted_features")),
    },
}
