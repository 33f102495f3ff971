"""Model cards rendered from the registry: what a version is, what it was trained on, what it was tested
against and with what result, the threats it answers, who approved it and where it is live — as Markdown,
a self-contained HTML page, or a CycloneDX 1.6 ML-BOM (JSON).

Everything on a card comes from the registry's rows and the evidence records attached to the version;
nothing is typed in by hand, so a card can be regenerated at any time and always agrees with the ledger.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel

from bastion import __version__
from bastion.governance.registry import ModelRegistry, VersionInfo

CardFormat = Literal["md", "html", "cyclonedx"]
CARD_FORMATS: tuple[str, ...] = ("md", "html", "cyclonedx")


class EvidenceLine(BaseModel):
    """One attached evidence record, summarised: its kind, file, date, hash and headline figures."""

    kind: str
    source: str
    created_at: str | None
    sha256: str
    headline: list[str]


class ThreatLine(BaseModel):
    id: str
    title: str
    risk: int
    atlas: list[str]
    gates: list[str]


class ModelCard(BaseModel):
    """The facts of one version's card (see :func:`model_card`)."""

    version: VersionInfo
    threat_system: dict[str, Any] | None
    threats: list[ThreatLine]
    gates: list[dict[str, Any]]
    evidence: list[EvidenceLine]
    generated_at: datetime


def model_card(registry: ModelRegistry, ref: str) -> ModelCard:
    """Gather ``ref``'s card from the registry: the version, its threat model's paths by risk, its gates
    evaluated on its evidence, and a headline per evidence record."""
    info = registry.version(ref)
    documents = registry.evidence(ref)
    threat = registry.threat_document(ref)
    threats = [] if threat is None else [
        ThreatLine(id=path.id, title=path.title, risk=path.risk, atlas=list(path.atlas),
                   gates=[gate.gate_id for gate in path.requires]) for path in threat.ranked_paths()]
    evidence = [EvidenceLine(kind=row.kind, source=row.source, sha256=row.sha256,
                             created_at=document.get("created_at"), headline=_headline(document))
                for row, document in zip(info.evidence, documents, strict=True)]
    return ModelCard(version=info, threat_system=None if threat is None else threat.system.model_dump(mode="json"),
                     threats=threats, gates=registry.gates(ref), evidence=evidence,
                     generated_at=datetime.now(timezone.utc))


def render_card(card: ModelCard, form: CardFormat) -> str:
    """The card as Markdown (``md``), an HTML page (``html``) or CycloneDX JSON (``cyclonedx``)."""
    if form == "md":
        return render_markdown(card)
    if form == "html":
        from bastion.workflows.pages import workflow_environment

        return workflow_environment().get_template("card.html").render(card=card, markdown=render_markdown(card))
    if form == "cyclonedx":
        import json

        return json.dumps(cyclonedx_bom(card), indent=2)
    raise ValueError(f"unknown card format {form!r}; use one of {', '.join(CARD_FORMATS)}")


# --- headline figures ----------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "—"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def _threshold(gate: dict[str, Any]) -> str:
    return f"{'≥' if gate.get('bound') == 'min' else '≤'} {_number(gate.get('threshold'))}"


def _headline(document: dict[str, Any]) -> list[str]:
    """A few figures of an evidence record a reader looks for first (by its ``kind``)."""
    kind = document.get("kind")
    if kind == "scan":
        suite = (document.get("config") or {}).get("suite", "?")
        return [f"robust accuracy {_pct(r.get('robust_accuracy'))} at eps {r.get('eps')} ({suite} suite), clean "
                f"{_pct(r.get('clean_accuracy'))}" for r in document.get("results", [])]
    if kind == "harden":
        return [f"{document.get('method')} training at eps {document.get('eps')}", *_headline(document.get("after")
                                                                                          or {})]
    if kind == "certify":
        config = document.get("config") or {}
        return [f"certified accuracy {_pct(document.get('certified_accuracy'))} at radius {config.get('radius')} "
                f"({config.get('method')})"]
    if kind == "privacy":
        return [f"train accuracy {_pct(document.get('train_accuracy'))}, test {_pct(document.get('test_accuracy'))}",
                *(f"{a.get('name', 'attack')}: AUC {a.get('auc', '—')}" for a in document.get("attacks", [])[:3])]
    if kind == "audit":
        return [f"{column.get('name')}: {sum(bool(f) for f in column.get('flags', []))} flagged"
                for column in document.get("audits", [])]
    return []


# --- Markdown -------------------------------------------------------------------------------------------


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown."""
    info = card.version
    lines = [f"# Model card: {info.ref}", "",
             f"*{info.status}*" + (f" · serving as {', '.join(info.aliases)}" if info.aliases else "")
             + f" · registered by {info.created_by} on {info.created_at:%Y-%m-%d}", ""]
    if info.note:
        lines += [info.note, ""]
    lines += ["## Artifacts", "", "| role | file | sha256 | signed by | scan |", "|---|---|---|---|---|"]
    lines += [f"| {a.role} | {a.name} | `{a.sha256}` | {a.signed_by[:16] + '…' if a.signed_by else '—'} | "
              f"{a.scan_verdict or '—'} |" for a in info.artifacts]
    lines += ["", f"Model: `{info.model_spec}`", ""]
    if card.threat_system is not None:
        system = card.threat_system
        lines += ["## Threat model", "", f"{system.get('name')}: {system.get('exposure')} exposure, answers with "
                  f"{system.get('output')}, reads {system.get('modality')} (document `{info.threat_sha256}`).", "",
                  "| attack path | risk | ATLAS | gates |", "|---|---|---|---|"]
        lines += [f"| {t.title} | {t.risk} | {', '.join(t.atlas)} | {', '.join(t.gates) or '—'} |"
                  for t in card.threats]
        lines.append("")
    lines += ["## Release gates", ""]
    if card.gates:
        lines += ["| gate | status | value | threshold |", "|---|---|---|---|"]
        lines += [f"| {g.get('description') or g.get('gate')} | {g.get('status')} | {_number(g.get('value'))} | "
                  f"{_threshold(g)} |" for g in card.gates]
    else:
        lines.append("No threat model, so no gates.")
    lines += ["", "## Evidence", ""]
    for line in card.evidence:
        dated = line.created_at or "undated"
        lines.append(f"- **{line.kind}** `{line.source}` ({dated}, sha256 `{line.sha256[:16]}…`)")
        lines += [f"  - {figure}" for figure in line.headline]
    if not card.evidence:
        lines.append("None attached.")
    lines += ["", "## Approvals", "", ", ".join(info.approvers) or "None yet.", "",
              f"*Generated by bastion {__version__} on {card.generated_at:%Y-%m-%d %H:%M} UTC from the registry.*", ""]
    return "\n".join(lines)


# --- CycloneDX ---------------------------------------------------------------------------------------------


def cyclonedx_bom(card: ModelCard) -> dict[str, Any]:
    """The card as a CycloneDX 1.6 ML-BOM: the model as a ``machine-learning-model`` component with its
    hashes and a ``modelCard`` (the evidence's figures as performance metrics, the threat paths as
    considerations), and each other artifact as a component of its own."""
    info = card.version
    model_ref = f"model:{info.name}:{info.number}"
    artifacts = {a.role: a for a in info.artifacts}
    main = artifacts.get("weights") or artifacts.get("model")
    component: dict[str, Any] = {
        "type": "machine-learning-model", "bom-ref": model_ref, "name": info.name, "version": str(info.number),
        "description": info.note or f"{info.model_spec}",
        "hashes": [{"alg": "SHA-256", "content": main.sha256}] if main else [],
        "modelCard": _cyclonedx_model_card(card),
        "properties": [{"name": "bastion:status", "value": info.status},
                       {"name": "bastion:model_spec", "value": info.model_spec},
                       *({"name": "bastion:alias", "value": alias} for alias in info.aliases),
                       *({"name": "bastion:approved_by", "value": who} for who in info.approvers)],
    }
    others = [{"type": "data" if a.role == "data-manifest" else "file", "bom-ref": f"{model_ref}:{a.role}",
               "name": a.name, "hashes": [{"alg": "SHA-256", "content": a.sha256}],
               "properties": [{"name": "bastion:role", "value": a.role}]}
              for a in info.artifacts if a is not main]
    for other in others:
        if other["type"] == "data":
            other["data"] = [{"type": "dataset", "name": other["name"], "description": "training data manifest"}]
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
        "metadata": {"timestamp": card.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "tools": {"components": [{"type": "application", "name": "bastion", "version": __version__}]},
                     "component": {"type": "machine-learning-model", "bom-ref": f"{model_ref}:meta",
                                   "name": info.name, "version": str(info.number)}},
        "components": [component, *others],
    }


def _cyclonedx_model_card(card: ModelCard) -> dict[str, Any]:
    metrics = [{"type": line.kind, "value": figure, "slice": line.source}
               for line in card.evidence for figure in line.headline]
    gates = [{"type": f"gate {g.get('gate')}", "value": _number(g.get("value")),
              "slice": f"{g.get('status')}; threshold {_threshold(g)}"} for g in card.gates]
    model_card: dict[str, Any] = {"modelParameters": {"task": "classification"}}
    if metrics or gates:
        model_card["quantitativeAnalysis"] = {"performanceMetrics": metrics + gates}
    if card.threats:
        model_card["considerations"] = {
            "technicalLimitations": [f"{t.title} (risk {t.risk}, {', '.join(t.atlas)})" for t in card.threats]}
    return model_card
