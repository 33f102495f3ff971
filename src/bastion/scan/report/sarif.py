"""A scan as SARIF 2.1.0, so code-scanning dashboards (GitHub, GitLab, Azure DevOps) list its
findings next to other security tools'.

Findings and their SARIF levels:
- ``BASTION-EVASION-<ATTACK>``: an attack broke points. ``error`` at the headline eps when the
  gate fails, ``warning`` at the headline eps otherwise, ``note`` at the other (informational) eps.
- ``BASTION-ROBUSTNESS-BELOW-THRESHOLD``: headline robust accuracy below ``fail_under`` (``error``).
- ``BASTION-GRADIENT-MASKING``: a sanity flag (``warning``, or ``note`` for an info flag); the flags
  that only describe a defended scan (``advice.CONTEXT_CHECKS``) are not findings.
Skipped attacks are tool-execution notifications, not findings.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion.core.records import AttackSummary, EpsResult, SanityFlag, ScanRecord
from bastion.scan.report._common import format_eps, percent, write_text_atomically
from bastion.scan.report.advice import CONTEXT_CHECKS
from bastion.scan.report.taxonomy import threat_ids

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
THRESHOLD_RULE = "BASTION-ROBUSTNESS-BELOW-THRESHOLD"
MASKING_RULE = "BASTION-GRADIENT-MASKING"
_EVASION_PREFIX = "BASTION-EVASION-"
# Characters kept as they are in an artifact URI (RFC 3986 reserved and unreserved, plus '%').
_URI_SAFE = ":/?#[]@!$&'()*+,;=-._~%"
# GitHub code scanning ranks security findings by this property (0-10).
_SECURITY_SEVERITY = {"evasion": "7.0", "threshold": "8.0", "masking": "5.0"}


def write_sarif(record: ScanRecord, path: str | Path) -> Path:
    """Write ``record``'s findings as a SARIF 2.1.0 log at ``path``.

    Raises:
        InputError: ``path`` cannot be written.
    """
    return write_text_atomically(Path(path), json.dumps(sarif_log(record), indent=2) + "\n")


def sarif_log(record: ScanRecord) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict: one run, one rule per finding type, one result each."""
    rules = _rules(record)
    rule_index = {rule["id"]: position for position, rule in enumerate(rules)}
    results = [dict(result, ruleIndex=rule_index[result["ruleId"]]) for result in _results(record)]
    run = {
        "tool": {"driver": {
            "name": "bastion",
            "version": record.bastion_version,
            "semanticVersion": record.bastion_version,
            "rules": rules,
        }},
        "invocations": [_invocation(record)],
        "results": results,
        "properties": {
            "suite": record.config.suite,
            "seed": record.config.seed,
            "modelSha256": record.model.sha256,
            "dataSha256": record.data.sha256,
            "createdAt": record.created_at.isoformat(),
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def evasion_rule_id(attack: str) -> str:
    """``"apgd-ce" -> "BASTION-EVASION-APGD-CE"``: letters, digits and dashes only."""
    return _EVASION_PREFIX + (re.sub(r"[^A-Za-z0-9]+", "-", attack).strip("-").upper() or "UNNAMED")


def _rules(record: ScanRecord) -> list[dict[str, Any]]:
    tags = ["security", "adversarial-robustness", *threat_ids(record.atlas_ids, record.owasp_ids)]
    names = list(dict.fromkeys(
        [*record.config.attacks, *(a.name for r in record.results for a in r.attacks)]
    ))
    evasion = [
        _rule(evasion_rule_id(name), "EvasionAttackSucceeds",
              f"{name} breaks robustness",
              f"The {name} evasion attack found inputs within the threat model's budget that the "
              "model misclassifies. An adversary with the same access can do the same.",
              "warning", tags, _SECURITY_SEVERITY["evasion"])
        for name in names
    ]
    return [
        *evasion,
        _rule(THRESHOLD_RULE, "RobustnessBelowThreshold",
              "Robust accuracy below the fail-under threshold",
              "Robust accuracy at the headline budget is below the threshold set with "
              "--fail-under; the release gate fails.",
              "error", tags, _SECURITY_SEVERITY["threshold"]),
        _rule(MASKING_RULE, "PossibleGradientMasking",
              "Evaluation may overestimate robustness",
              "A sanity check suggests gradient masking or a weak attack (probabilities instead of "
              "logits, randomness, zero gradients, black-box beating white-box). The reported "
              "robust accuracy may be higher than the model's true robustness.",
              "warning", ["security", "evaluation-reliability", *tags[2:]],
              _SECURITY_SEVERITY["masking"]),
    ]


def _rule(rule_id: str, name: str, short: str, full: str, level: str,
          tags: list[str], severity: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "defaultConfiguration": {"level": level},
        "properties": {"tags": tags, "security-severity": severity},
    }


def _results(record: ScanRecord) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    threshold = record.config.fail_under
    if threshold is not None and not record.passed():
        headline = record.headline
        found.append(_result(
            record, THRESHOLD_RULE, "error",
            f"Robust accuracy {percent(headline.robust_accuracy)} "
            f"at eps={format_eps(headline.eps)} "
            f"is below the fail-under threshold {percent(threshold)} "
            f"(clean accuracy {percent(headline.clean_accuracy)}).",
            {"eps": headline.eps, "robustAccuracy": headline.robust_accuracy,
             "failUnder": threshold},
            key=f"eps={headline.eps!r}",
        ))
    for position, result in enumerate(record.results):
        is_headline = position == 0
        broken = [a for a in result.attacks if a.points_broken > 0 and not a.skipped]
        found.extend(_evasion_result(record, result, attack, is_headline) for attack in broken)
        found.extend(_flag_result(record, result, flag) for flag in result.flags
                     if flag.check not in CONTEXT_CHECKS)
    return found


def _evasion_result(record: ScanRecord, result: EpsResult, attack: AttackSummary,
                    is_headline: bool) -> dict[str, Any]:
    if not is_headline:
        level = "note"
    else:
        level = "warning" if record.passed() else "error"
    after = percent(attack.robust_accuracy_after)
    text = (f"{attack.name} broke {attack.points_broken} of {attack.points_attacked} points it "
            f"attacked at eps={format_eps(result.eps)} ({record.config.norm}); robust accuracy "
            f"after it: {after} (clean {percent(result.clean_accuracy)}), "
            f"{attack.queries} queries.")
    properties = {"eps": result.eps, "attack": attack.name, "headline": is_headline,
                  "pointsAttacked": attack.points_attacked, "pointsBroken": attack.points_broken,
                  "robustAccuracyAfter": attack.robust_accuracy_after}
    return _result(record, evasion_rule_id(attack.name), level, text, properties,
                   key=f"eps={result.eps!r}|attack={attack.name}")


def _flag_result(record: ScanRecord, result: EpsResult, flag: SanityFlag) -> dict[str, Any]:
    level = "warning" if flag.severity == "warning" else "note"
    text = f"Sanity check '{flag.check}' at eps={format_eps(result.eps)}: {flag.message}"
    return _result(record, MASKING_RULE, level, text, {"eps": result.eps, "check": flag.check},
                   key=f"eps={result.eps!r}|check={flag.check}")


def _result(record: ScanRecord, rule_id: str, level: str, text: str,
            properties: dict[str, Any], *, key: str) -> dict[str, Any]:
    # Stable across re-scans of the same model path, so dashboards track a finding over time.
    identity = f"{rule_id}|{record.model.description}|{key}"
    return {
        "ruleId": rule_id,
        "level": level,
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": _model_uri(record)}}}],
        "partialFingerprints": {"bastionFinding/v1": hashlib.sha256(identity.encode()).hexdigest()},
        "properties": properties,
    }


def _invocation(record: ScanRecord) -> dict[str, Any]:
    notifications = [
        {"level": "note",
         "message": {"text": f"{attack.name} skipped at eps={format_eps(result.eps)}: "
                             f"{attack.skipped}"},
         "associatedRule": {"id": evasion_rule_id(attack.name)}}
        for result in record.results for attack in result.attacks if attack.skipped
    ]
    return {"executionSuccessful": True, "toolExecutionNotifications": notifications}


def _model_uri(record: ScanRecord) -> str:
    """The model description as a URI reference (spaces and other unsafe characters escaped)."""
    return quote(record.model.description, safe=_URI_SAFE)
