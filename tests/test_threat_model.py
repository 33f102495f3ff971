"""Threat-model documents and release gates: validation messages, ranking, and gates read from real evidence."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from bastion.attacks.extraction.base import CurvePoint as FidelityPoint
from bastion.attacks.extraction.base import ExtractionRecord
from bastion.attacks.inference.metrics import membership_result, tpr_at_fpr
from bastion.cli.threat import threat_app
from bastion.core.errors import ConfigError, InputError
from bastion.core.evidence import CertifyConfig, CertifyRecord, CurvePoint, HardenCost, HardenRecord
from bastion.core.records import ArtifactRef, DatasetRef, ScanRecord
from bastion.data.sources import load_dataset
from bastion.defenses.training import train_classifier
from bastion.defenses.training.record import EpochRecord, OptimiserSettings, TrainingRecord
from bastion.governance.gates import METRICS, evaluate_gates, gates_pass, load_evidence
from bastion.governance.threat_model import (
    ThreatDocument,
    load_threat_document,
    parse_threat_document,
    template_names,
    template_text,
)
from bastion.models.loading import LoadedModel
from bastion.models.torch_adapter import TorchClassifier
from bastion.monitor.drift import DriftThresholds, TrafficWindow, drift_report
from bastion.scan.runner import ScanSettings, run_scan
from bastion.workflows.audit import AuditSettings, run_audit
from bastion.workflows.privacy_records import (
    ExtractionRun,
    ExtractionScanRecord,
    ExtractionSettings,
    PrivacyRecord,
    PrivacySettings,
)

runner = CliRunner()
MODEL = ArtifactRef(description="linear digits", sha256="a" * 64, kind="torch", access="white")
DATA = DatasetRef(description="digits", count=100, sha256="b" * 64, input_shape=[1, 8, 8], num_classes=10)

BASE = """
system: {name: digits-api, exposure: public, output: scores, modality: image}
assets:
  - {id: decisions, description: the labels it gives}
  - {id: training-data, description: the digits it learnt from}
attackers:
  - {id: api-user, goal: evade it, capabilities: [query-access]}
  - {id: contributor, goal: poison it, capabilities: [training-data-write]}
attack_paths:
  - id: evasion
    title: crafted digits evade it
    attacker: api-user
    assets: [decisions]
    atlas: [AML.T0043, AML.T0015]
    likelihood: 4
    impact: 4
    requires:
      - {evidence: scan, metric: robust_accuracy, eps: 0.05, min: 0.1}
  - id: poisoning
    title: poisoned digits plant a backdoor
    attacker: contributor
    assets: [decisions, training-data]
    atlas: [AML.T0020]
    likelihood: 2
    impact: 5
    requires:
      - {evidence: audit, metric: flagged, check: duplicates, max: 3}
"""


def base() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def document(*gates: dict[str, Any]) -> ThreatDocument:
    """The base document with the evasion path requiring ``gates`` (and the poisoning path none)."""
    data = base()
    data["attack_paths"][0]["requires"] = list(gates)
    data["attack_paths"][1]["requires"] = []
    return parse_threat_document(data)


# --- evidence produced by the real workflows -----------------------------------------------------------


def stored(record: Any) -> dict[str, Any]:
    """A record as ``bastion`` stores it and ``threat check`` reads it back: its JSON, parsed."""
    return json.loads(record.model_dump_json())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=200)


@pytest.fixture(scope="module")
def scan(digits) -> dict[str, Any]:
    """``run_scan`` (FGSM at eps 0.05 and 0.1) of a linear model trained briefly on 200 digits."""
    torch.manual_seed(0)
    model = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (1, 8, 8), 10)
    train_classifier(model, digits.x, digits.y, epochs=5, lr=0.05, seed=0)
    outcome = run_scan(LoadedModel(model, "linear digits", None, "torch"), digits.subset(slice(0, 100)),
                       ScanSettings(eps=[0.05, 0.1], attacks=["fgsm"]))
    return stored(outcome.record)


@pytest.fixture(scope="module")
def audit(digits) -> dict[str, Any]:
    """``run_audit`` (duplicates, label issues; no model, so no poison check) of 200 digits plus 3 exact copies
    and one near copy (which only the near-duplicate audit flags)."""
    near = np.clip(digits.x[3:4] * 0.999, 0, 1)
    copied = replace(digits, x=np.concatenate([digits.x, digits.x[:3], near]),
                     y=np.concatenate([digits.y, digits.y[:3], digits.y[3:4]]))
    return stored(run_audit(copied, AuditSettings(checks=["duplicates", "label-issues"])))


@pytest.fixture(scope="module")
def membership() -> dict[str, Any]:
    """Scores of two membership attacks on 400 members and 400 non-members (LiRA the stronger)."""
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    return {name: membership_result(rng.normal(size=800) + shift * truth, truth, attack=name)
            for name, shift in (("loss-threshold", 0.5), ("lira", 1.5))}


@pytest.fixture(scope="module")
def privacy(membership) -> dict[str, Any]:
    record = PrivacyRecord(
        bastion_version="0.1.0", library_versions={}, config=PrivacySettings(defenses=["none"]), model=MODEL,
        members=DATA, non_members=DATA, class_names=[str(c) for c in range(10)], bounds=(0.0, 1.0),
        train_accuracy=0.97, test_accuracy=0.90, attacks=list(membership.values()), defenses=[], seconds=1.0)
    return stored(record)


@pytest.fixture(scope="module")
def drift() -> dict[str, Any]:
    rng = np.random.default_rng(0)

    def window(shift: float, label: str) -> TrafficWindow:
        inputs = rng.normal(size=(60, 4)) + shift
        return TrafficWindow(inputs, rng.uniform(0.5, 1, 60), rng.integers(0, 3, 60), 3, label)

    report = drift_report(window(0.0, "before"), window(3.0, "after"), thresholds=DriftThresholds(permutations=100))
    return stored(report)


def robust_accuracy(scan: dict[str, Any], eps: float) -> float:
    return next(row["robust_accuracy"] for row in scan["results"] if row["eps"] == eps)


# --- documents -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["public-image-api", "internal-tabular", "llm-chat-api"])
def test_templates_load_and_require_evidence(name: str) -> None:
    assert name in template_names()
    threat = parse_threat_document(yaml.safe_load(template_text(name)), source=name)
    gates = [gate for path in threat.attack_paths for gate in path.requires]
    assert gates and {gate.evidence for gate in gates} <= set(METRICS)


def test_unknown_template_names_those_there_are() -> None:
    with pytest.raises(ConfigError, match="choose one of internal-tabular, llm-chat-api, public-image-api"):
        template_text("public-text-api")


def _edit(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The base document with the value at ``path`` replaced (``...`` as value: deleted)."""
    data = base()
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


GATE = ("attack_paths", 0, "requires", 0)


@pytest.mark.parametrize(("path", "value", "where", "hint"), [
    (("attack_paths", 0, "attacker"), "ghost", "attack_paths[0].attacker: unknown attacker 'ghost'",
     "api-user, contributor"),
    (("attack_paths", 1, "assets", 1), "weights", "attack_paths[1].assets[1]: unknown asset 'weights'",
     "decisions, training-data"),
    ((*GATE, "metric"), "robustness", "attack_paths[0].requires[0].metric: 'robustness' is no metric of scan",
     "robust_accuracy, clean_accuracy"),
    ((*GATE, "eps"), ..., "attack_paths[0].requires[0]: scan robust_accuracy needs eps", "add 'eps: 0.03'"),
    ((*GATE, "fpr"), 0.01, "attack_paths[0].requires[0]: fpr does not apply to scan robust_accuracy",
     "remove it"),
    ((*GATE, "max"), 0.9, "attack_paths[0].requires[0]: give one threshold, min or max, not both", "two gates"),
    ((*GATE, "min"), ..., "attack_paths[0].requires[0]: give a threshold", "'min: 0.5'"),
    ((*GATE, "evidence"), "pentest", "attack_paths[0].requires[0].evidence", "'scan'"),
    (("attack_paths", 1, "requires", 0, "check"), "backdoor", "attack_paths[1].requires[0].check: unknown audit "
     "check 'backdoor'", "poison"),
    (("attack_paths", 0, "atlas", 1), "AML.T15", "attack_paths[0].atlas[1]: 'AML.T15' is not a MITRE ATLAS",
     "AML.T0043"),
    (("attack_paths", 0, "owner"), "security team", "attack_paths[0].owner: unknown field",
     "the fields here are id, title"),
    (("version",), 2, "version: unknown field", "schema_version, system"),
    (("attack_paths", 0, "likelihood"), 6, "attack_paths[0].likelihood", "5"),
    (("attack_paths", 0, "risk"), 20, "attack_paths[0]: risk is computed as likelihood x impact (16)", "remove"),
    (("attackers", 0, "capabilities", 0), "root", "attackers[0].capabilities[0]", "'query-access'"),
    (("attack_paths", 1, "id"), "evasion", "attack_paths[1].id: 'evasion' is used twice", "distinct"),
    (("system", "exposure"), ..., "system.exposure: missing; add it", "public, partner or internal"),
])
def test_a_bad_document_names_the_path_and_the_fix(path: tuple[Any, ...], value: Any, where: str,
                                                    hint: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_threat_document(_edit(path, value), source="threat.yaml")
    message = str(caught.value)
    assert message.startswith("threat.yaml is not a valid threat document")
    line = next((line for line in message.splitlines() if where in line), None)
    assert line is not None, message
    assert hint in line, line


def test_load_reports_missing_files_yaml_syntax_and_the_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no threat document at .*bastion threat init"):
        load_threat_document(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("system:\n  name: x\n assets: [\n")
    with pytest.raises(InputError, match=r"broken.yaml line 3, column 2: not valid YAML"):
        load_threat_document(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- system\n- assets\n")
    with pytest.raises(InputError, match="a threat document is a mapping"):
        load_threat_document(listed)
    good = tmp_path / "threat.yaml"
    good.write_text(BASE)
    assert load_threat_document(good).system.name == "digits-api"


def test_a_key_given_twice_and_yes_no_for_numbers_are_refused(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text(BASE + "attack_paths: []\n")  # a second attack_paths would drop every gate of the first
    with pytest.raises(InputError, match=r"twice.yaml line \d+, column 1: not valid YAML \(found the key "
                                         r"'attack_paths' twice; keep one\)"):
        load_threat_document(twice)
    for where, value in (("likelihood", True), ("requires", [{"evidence": "scan", "metric": "robust_accuracy",
                                                               "eps": 0.03, "min": True}])):
        data = base()
        data["attack_paths"][0][where] = value
        with pytest.raises(InputError, match="is a yes/no value; give a number"):
            parse_threat_document(data, source="threat.yaml")


def test_paths_rank_by_risk_then_impact() -> None:
    data = base()
    template = data["attack_paths"][0]
    scores = {"low": (1, 4), "top": (5, 4), "mid": (3, 3), "top-by-impact": (4, 5)}
    data["attack_paths"] = [{**template, "id": name, "likelihood": likelihood, "impact": impact}
                            for name, (likelihood, impact) in scores.items()]
    ranked = parse_threat_document(data).ranked_paths()
    assert [(path.id, path.risk) for path in ranked] == [("top-by-impact", 20), ("top", 20), ("mid", 9), ("low", 4)]


def test_sha256_is_stable_survives_a_json_round_trip_and_sees_a_changed_threshold() -> None:
    threat = parse_threat_document(base())
    again = ThreatDocument.model_validate(json.loads(json.dumps(threat.model_dump(mode="json"))))
    assert again.sha256() == threat.sha256() == parse_threat_document(base()).sha256()
    looser = parse_threat_document(_edit((*GATE, "min"), 0.05))
    assert looser.sha256() != threat.sha256()


def test_gate_ids_default_from_evidence_metric_and_selectors() -> None:
    threat = parse_threat_document(base())
    assert [path.requires[0].gate_id for path in threat.attack_paths] == [
        "scan.robust_accuracy@eps=0.05", "audit.flagged@check=duplicates"]


# --- gates on real evidence ----------------------------------------------------------------------------


def test_scan_gates_pass_fail_and_miss_on_a_real_scan(scan: dict[str, Any]) -> None:
    measured = robust_accuracy(scan, 0.05)
    threat = document(
        {"id": "pass", "evidence": "scan", "metric": "robust_accuracy", "eps": 0.05, "min": measured - 0.01},
        {"id": "fail", "evidence": "scan", "metric": "robust_accuracy", "eps": 0.05, "min": measured + 0.01},
        {"id": "other-eps", "evidence": "scan", "metric": "robust_accuracy", "eps": 0.2, "min": 0.1},
        {"id": "other-suite", "evidence": "scan", "metric": "robust_accuracy", "eps": 0.05, "suite": "standard",
         "min": 0.1},
        {"id": "clean", "evidence": "scan", "metric": "clean_accuracy", "max": 1.0},
    )
    results = {result.gate: result for result in evaluate_gates(threat, [scan])}
    assert results["pass"].status == "pass" and results["pass"].value == pytest.approx(measured)
    assert results["fail"].status == "fail" and "below the minimum" in results["fail"].reason
    assert results["pass"].source.index == 0 and results["pass"].source.kind == "scan"
    assert results["pass"].source.created_at == scan["created_at"]
    assert results["other-eps"].status == "missing" and results["other-eps"].value is None
    assert results["other-eps"].reason == "the scan evaluated eps 0.05, 0.1, not 0.2"
    assert results["other-suite"].reason == "the scan ran suite 'custom', not 'standard'"
    assert results["clean"].value == pytest.approx(scan["results"][0]["clean_accuracy"])
    assert results["pass"].description == "scan: robust accuracy at eps 0.05 at least " + f"{measured - 0.01:g}"
    assert not gates_pass(list(results.values()))
    assert gates_pass([results["pass"], results["clean"]])


def test_a_kind_without_evidence_is_missing_and_says_how_to_produce_it(scan: dict[str, Any]) -> None:
    threat = document({"evidence": "privacy", "metric": "train_test_gap", "max": 0.1})
    [result] = evaluate_gates(threat, [scan])
    assert result.status == "missing" and result.source is None
    assert "no privacy evidence was given" in result.reason and "--suite privacy" in result.reason


def test_the_newest_record_that_holds_the_value_decides(scan: dict[str, Any]) -> None:
    measured = robust_accuracy(scan, 0.05)
    older, newer = copy.deepcopy(scan), copy.deepcopy(scan)
    older["created_at"], newer["created_at"] = "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"
    newer["results"][0]["robust_accuracy"] = measured + 0.5  # the newer model is more robust
    threat = document({"evidence": "scan", "metric": "robust_accuracy", "eps": 0.05, "min": measured + 0.25})
    for evidence, newest in (([older, newer], 1), ([newer, older], 0)):
        [result] = evaluate_gates(threat, evidence)
        assert (result.status, result.source.index) == ("pass", newest)
        assert result.source.created_at == "2026-03-01T00:00:00Z"
    newer["results"] = newer["results"][1:]  # the newest scan did not run eps 0.05: the older one answers
    [result] = evaluate_gates(threat, [older, newer])
    assert (result.status, result.source.index, result.value) == ("fail", 0, pytest.approx(measured))


def test_audit_gates_count_flagged_samples_of_a_real_audit(audit: dict[str, Any]) -> None:
    threat = document(
        {"id": "copies", "evidence": "audit", "metric": "flagged", "check": "duplicates", "max": 4},
        {"id": "copies-strict", "evidence": "audit", "metric": "flagged", "check": "exact-duplicates", "max": 2},
        {"id": "label", "evidence": "audit", "metric": "flagged", "check": "label", "max": 1000},
        {"id": "share", "evidence": "audit", "metric": "flagged_share", "check": "duplicates", "max": 0.02},
        {"id": "poison", "evidence": "audit", "metric": "flagged", "check": "poison", "max": 0},
    )
    results = {result.gate: result for result in evaluate_gates(threat, [audit])}
    flagged = {column["name"]: {i for i, flag in enumerate(column["flags"]) if flag} for column in audit["audits"]}
    assert flagged["exact-duplicates"] == {200, 201, 202} and 203 in flagged["near-duplicates"]
    # Exact and near duplicates together: each flagged sample counted once.
    assert (results["copies"].status, results["copies"].value) == ("pass", 4)
    assert (results["copies-strict"].status, results["copies-strict"].value) == ("fail", 3)
    labels = next(column for column in audit["audits"] if column["name"] == "label-issues")
    assert results["label"].value == sum(labels["flags"])
    assert results["share"].value == pytest.approx(4 / 204) and results["share"].status == "pass"
    assert results["poison"].status == "missing"
    assert results["poison"].reason.startswith("the audit ran exact-duplicates, near-duplicates, label-issues, not "
                                               "poison-consensus")
    assert "pass --model" in results["poison"].reason


def test_membership_tpr_reads_the_strongest_attack_at_the_asked_fpr(privacy: dict[str, Any], membership) -> None:
    lira, loss = membership["lira"], membership["loss-threshold"]
    threat = document(
        {"id": "best-1pct", "evidence": "privacy", "metric": "membership_tpr", "fpr": 0.01, "max": 0.99},
        {"id": "loss-5pct", "evidence": "privacy", "metric": "membership_tpr", "fpr": 0.05, "attack": "loss-threshold",
         "max": 0.01},
        {"id": "absent", "evidence": "privacy", "metric": "membership_tpr", "fpr": 0.01, "attack": "gap", "max": 0.1},
        {"id": "gap", "evidence": "privacy", "metric": "train_test_gap", "max": 0.05},
    )
    results = {result.gate: result for result in evaluate_gates(threat, [privacy])}
    assert results["best-1pct"].value == pytest.approx(max(lira.tpr_at_1pct, loss.tpr_at_1pct))
    assert results["best-1pct"].detail == "attack lira" and results["best-1pct"].status == "pass"
    # Away from 1% and 0.1% the TPR is read off the stored ROC curve, by the same rule as tpr_at_fpr.
    assert results["loss-5pct"].value == pytest.approx(tpr_at_fpr(loss.scores, loss.is_member, 0.05))
    assert results["loss-5pct"].status == "fail"
    assert results["absent"].status == "missing"
    assert results["absent"].reason == "the privacy scan's attacks: it ran loss-threshold, lira, not 'gap'"
    assert results["gap"].value == pytest.approx(0.07) and results["gap"].status == "fail"


def test_drift_gates_read_a_real_drift_report(drift: dict[str, Any]) -> None:
    threat = document({"id": "alerts", "evidence": "drift", "metric": "alerts", "max": 0},
                      {"id": "detected", "evidence": "drift", "metric": "drift_detected", "max": 0})
    results = {result.gate: result for result in evaluate_gates(threat, [drift])}
    assert drift["alerts"] and results["alerts"].value == len(drift["alerts"])
    assert results["detected"].value == 1 and results["detected"].status == "fail"


def _harden(scan: dict[str, Any]) -> dict[str, Any]:
    after = ScanRecord.model_validate(scan)
    cost = HardenCost(training_seconds=1.0, clean_accuracy_before=0.99, clean_accuracy_after=0.97,
                      robust_accuracy_before=0.1, robust_accuracy_after=0.6)
    return stored(HardenRecord(bastion_version="0.1.0", library_versions={}, method="pgd-at", norm="linf", eps=0.05,
                               training={}, model_before=None, model_after=MODEL, train_data=DATA, eval_data=DATA,
                               after=after, cost=cost))


def _certify(scan: dict[str, Any]) -> dict[str, Any]:
    config = CertifyConfig(method="smoothing", norm="l2", radius=0.25, radii=[0.0, 0.25, 0.5], sigma=0.25,
                           bounds=(0.0, 1.0), seed=0, batch_size=64)
    curve = [CurvePoint(radius=r, certified_accuracy=a) for r, a in ((0.0, 0.8), (0.25, 0.6), (0.5, 0.3))]
    return stored(CertifyRecord(bastion_version="0.1.0", library_versions={}, config=config, model=MODEL, data=DATA,
                                clean_accuracy=0.9, certified_accuracy=0.6, abstain_rate=0.1, curve=curve,
                                samples=[], seconds=1.0))


def _extraction(scan: dict[str, Any]) -> dict[str, Any]:
    def run(strategy: str, fidelity: float, accuracy: float) -> ExtractionRun:
        record = ExtractionRecord(attack="knockoff", budget=1000, queries=1000, output="probabilities",
                                  targets="probabilities", fidelity=fidelity, accuracy=accuracy, eval_samples=100,
                                  curve=[FidelityPoint(queries=1000, fidelity=fidelity, accuracy=accuracy)], seed=0)
        return ExtractionRun(name=f"knockoff {strategy}, probabilities", strategy=strategy, record=record)

    return stored(ExtractionScanRecord(
        bastion_version="0.1.0", library_versions={}, config=ExtractionSettings(defenses=["none"]), model=MODEL,
        pool=DATA, eval_data=DATA, eval_source="held out", copy_model="linear", victim_accuracy=0.95,
        runs=[run("random", 0.7, 0.8), run("adaptive", 0.85, 0.75)], defenses=[], seconds=1.0))


def _training(scan: dict[str, Any]) -> dict[str, Any]:
    history = [EpochRecord(epoch=1, loss=1.0, lr=0.1, seconds=1.0, val_clean=0.8, val_robust=0.4),
               EpochRecord(epoch=2, loss=0.5, lr=0.1, seconds=1.0, val_clean=0.9, val_robust=0.5),
               EpochRecord(epoch=3, loss=0.4, lr=0.1, seconds=1.0, val_clean=0.9, val_robust=0.45)]
    optimiser = OptimiserSettings(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="constant",
                                  batch_size=64)
    return stored(TrainingRecord(method="pgd-at", params={}, optimiser=optimiser, seed=0, epochs_planned=3, epochs=3,
                                 history=history, best_epoch=2, seconds=3.0, train_samples=100, train_accuracy=0.93))


@pytest.mark.parametrize(("build", "gate", "expected"), [
    (_harden, {"evidence": "harden", "metric": "robust_accuracy", "eps": 0.1},
     lambda scan: robust_accuracy(scan, 0.1)),
    (_harden, {"evidence": "harden", "metric": "clean_accuracy"}, lambda scan: scan["results"][0]["clean_accuracy"]),
    (_harden, {"evidence": "harden", "metric": "clean_accuracy_lost"}, lambda scan: 0.02),
    (_certify, {"evidence": "certify", "metric": "certified_accuracy"}, lambda scan: 0.6),
    (_certify, {"evidence": "certify", "metric": "certified_accuracy", "radius": 0.5}, lambda scan: 0.3),
    (_extraction, {"evidence": "extraction", "metric": "fidelity"}, lambda scan: 0.85),
    (_extraction, {"evidence": "extraction", "metric": "fidelity", "attack": "random"}, lambda scan: 0.7),
    (_extraction, {"evidence": "extraction", "metric": "copy_accuracy"}, lambda scan: 0.8),
    (_training, {"evidence": "training", "metric": "val_robust"}, lambda scan: 0.5),
    (_training, {"evidence": "training", "metric": "train_accuracy"}, lambda scan: 0.93),
])
def test_each_kind_reads_its_own_record(scan: dict[str, Any], build, gate: dict[str, Any], expected) -> None:
    [result] = evaluate_gates(document({**gate, "min": 0.0}), [build(scan)])
    assert result.status == "pass" and result.value == pytest.approx(expected(scan))


def test_a_value_the_record_lacks_is_missing_with_what_it_holds(scan: dict[str, Any]) -> None:
    threat = document({"id": "radius", "evidence": "certify", "metric": "certified_accuracy", "radius": 1.0, "min": 0},
                      {"id": "eps", "evidence": "harden", "metric": "robust_accuracy", "eps": 0.3, "min": 0},
                      {"id": "dp", "evidence": "training", "metric": "dp_epsilon", "max": 8})
    evidence = [_certify(scan), _harden(scan), _training(scan)]
    results = {result.gate: result for result in evaluate_gates(threat, evidence)}
    assert results["radius"].reason == "the certification curve evaluated radius 0, 0.25, 0.5, not 1"
    assert results["eps"].reason == "the scan after hardening evaluated eps 0.05, 0.1, not 0.3"
    assert results["dp"].reason.startswith("the training run was not differentially private")
    assert {result.status for result in results.values()} == {"missing"}


def test_evidence_without_a_known_kind_is_an_input_error(scan: dict[str, Any]) -> None:
    threat = document({"evidence": "scan", "metric": "clean_accuracy", "min": 0.1})
    with pytest.raises(InputError, match="evidence record #1 has kind 'report'.*known kinds: scan"):
        evaluate_gates(threat, [scan, {"kind": "report"}])
    with pytest.raises(InputError, match="#0 is not a JSON object"):
        evaluate_gates(threat, [[scan]])


def test_a_malformed_record_reads_as_missing_not_a_crash() -> None:
    threat = document({"evidence": "scan", "metric": "robust_accuracy", "eps": 0.05, "min": 0.1})
    [result] = evaluate_gates(threat, [{"kind": "scan", "results": "none"}])
    assert result.status == "missing" and "lacks the fields this metric reads" in result.reason


# --- the command line ----------------------------------------------------------------------------------


def _files(tmp_path: Path, scan: dict[str, Any], min_robust: float) -> tuple[Path, Path]:
    data = base()
    data["attack_paths"][0]["requires"][0]["min"] = min_robust
    data["attack_paths"][1]["requires"] = []
    threat = tmp_path / "threat.yaml"
    threat.write_text(yaml.safe_dump(data))
    evidence = tmp_path / "scan.json"
    evidence.write_text(json.dumps(scan))
    return threat, evidence


def test_cli_init_prints_templates_and_refuses_unknown_ones() -> None:
    result = runner.invoke(threat_app, ["init", "--template", "internal-tabular"])
    assert result.exit_code == 0 and yaml.safe_load(result.output) == yaml.safe_load(template_text("internal-tabular"))
    result = runner.invoke(threat_app, ["init", "--list"])
    assert result.exit_code == 0 and result.output.split() == template_names()
    result = runner.invoke(threat_app, ["init", "--template", "nope"])
    assert result.exit_code == 2 and "choose one of internal-tabular" in result.output


def test_cli_validate_ranks_paths_and_rejects_bad_documents(tmp_path: Path) -> None:
    good = tmp_path / "threat.yaml"
    good.write_text(BASE)
    result = runner.invoke(threat_app, ["validate", str(good)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.index("evasion") < result.output.index("poisoning") and "4 x 4" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_edit(("attack_paths", 0, "attacker"), "ghost")))
    result = runner.invoke(threat_app, ["validate", str(bad)])
    assert result.exit_code == 2 and "attack_paths[0].attacker: unknown attacker 'ghost'" in result.output


def test_cli_validate_shows_whole_ids_in_an_80_column_terminal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    document = tmp_path / "threat.yaml"
    document.write_text(template_text("public-image-api"))
    result = runner.invoke(threat_app, ["validate", str(document)])
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines()[1:])) <= 80  # the table fits
    cells = {cell.strip() for line in result.output.splitlines() for cell in line.split("│")}
    threat = load_threat_document(document)
    ids = {path.id for path in threat.attack_paths} | {path.attacker for path in threat.attack_paths}
    assert {"AML.T0024.000", "AML.T0024.002"} <= cells and ids <= cells and "…" not in result.output


def test_cli_check_exits_0_when_gates_pass_and_writes_json(tmp_path: Path, scan: dict[str, Any]) -> None:
    threat, evidence = _files(tmp_path, scan, robust_accuracy(scan, 0.05) - 0.01)
    out = tmp_path / "gates.json"
    result = runner.invoke(threat_app, ["check", str(threat), "--evidence", str(evidence), "--json", str(out)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "all 1 gates pass" in result.output
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["results"][0]["status"] == "pass"
    assert report["document_sha256"] == load_threat_document(threat).sha256()


def test_cli_check_exits_1_on_a_failing_or_missing_gate(tmp_path: Path, scan: dict[str, Any]) -> None:
    threat, evidence = _files(tmp_path, scan, robust_accuracy(scan, 0.05) + 0.01)
    result = runner.invoke(threat_app, ["check", str(threat), "-e", str(evidence)], terminal_width=200)
    assert result.exit_code == 1 and "FAIL" in result.output and "release blocked" in result.output
    audit_only = tmp_path / "audit.json"
    audit_only.write_text(json.dumps({"kind": "audit", "audits": []}))
    result = runner.invoke(threat_app, ["check", str(threat), "-e", str(audit_only)], terminal_width=200)
    assert result.exit_code == 1 and "no scan evidence was given" in result.output


def test_cli_check_exits_2_on_bad_evidence(tmp_path: Path, scan: dict[str, Any]) -> None:
    threat, _ = _files(tmp_path, scan, 0.1)
    unknown = tmp_path / "other.json"
    unknown.write_text(json.dumps({"results": []}))
    not_json = tmp_path / "scan.html"
    not_json.write_text("<html>")
    for path, message in ((tmp_path / "absent.json", "cannot read evidence file"), (unknown, "has no 'kind'"),
                          (not_json, "is not JSON (line 1, column 1")):
        result = runner.invoke(threat_app, ["check", str(threat), "-e", str(path)], terminal_width=200)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    with pytest.raises(InputError, match="has no 'kind'"):
        load_evidence(unknown)


def test_threat_is_registered_on_the_main_command() -> None:
    from bastion.cli.main import app

    result = runner.invoke(app, ["threat", "init", "--list"])
    assert result.exit_code == 0 and "public-image-api" in result.output
