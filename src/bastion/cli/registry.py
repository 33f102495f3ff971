"""``bastion registry``: register model versions with their artifacts and threat model, attach evidence,
approve (two people, gates passing), promote to an alias, roll back.

State lives in ``--home`` (default ``$BASTION_HOME``, else ``./.bastion``), beside the datasets; ``--as``
names who acts (default ``$BASTION_USER``, else the OS user name); every change is a ledger entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bastion.cli.console import console, errors, user_errors
from bastion.cli.data_versions import Actor, Home
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.governance.registry import ModelRegistry, VersionInfo

registry_app = typer.Typer(help="Model versions, evidence, approvals and aliases (production, staging).",
                           no_args_is_help=True)
Ref = Annotated[str, typer.Argument(help="A version: NAME:NUMBER (fraud-cnn:3) or NAME:ALIAS (fraud-cnn:production).",
                                    show_default=False)]
Alias = Annotated[str, typer.Option("--to", "--alias", help="The alias.")]


@contextmanager
def _registry(home: Path | None, *, create: bool = False) -> Iterator[ModelRegistry]:
    from bastion.governance.registry import open_registry

    registry = open_registry(home, create=create)
    try:
        yield registry
    finally:
        registry.close()


@registry_app.command("register")
def register_command(
    name: Annotated[str, typer.Option("--name", help="The model's name (created on first use).", show_default=False)],
    model: Annotated[str, typer.Option("--model", help="A model file or a factory 'module:function'.",
                                       show_default=False)],
    weights: Annotated[Path | None, typer.Option(help="Weights file (.safetensors, .pt...).",
                                                 show_default=False)] = None,
    data_manifest: Annotated[Path | None, typer.Option("--data-manifest", help="The training data's manifest "
                                                       "(bastion data manifest).", show_default=False)] = None,
    threat: Annotated[Path | None, typer.Option(help="The threat model YAML (bastion threat init); its gates decide "
                                                "approval.", show_default=False)] = None,
    sign_key: Annotated[Path | None, typer.Option("--sign-key", help="ed25519 private key (bastion data keygen) "
                                                  "to sign each artifact's hash.", show_default=False)] = None,
    note: Annotated[str, typer.Option(help="What this version is.")] = "",
    actor: Actor = None,
    home: Home = None,
) -> None:
    """Register a new version: each file scanned, hashed, stored (and signed); a ledger entry."""
    with user_errors(), _registry(home, create=True) as registry:
        info = registry.register(name, model=model, weights=weights, data_manifest=data_manifest, threat=threat,
                                 sign_key=sign_key, note=note, actor=actor)
    console.print(f"registered {info.ref}: " + ", ".join(f"{a.role} {a.sha256[:12]}" for a in info.artifacts),
                  highlight=False)


@registry_app.command("attach")
def attach_command(ref: Ref, files: Annotated[list[Path], typer.Argument(help="Evidence JSON files.",
                                                                        show_default=False)],
                   actor: Actor = None, home: Home = None) -> None:
    """Attach evidence records (the JSON of bastion scan, data audit, privacy, certify, harden...)."""
    with user_errors(), _registry(home) as registry:
        info = registry.attach(ref, files, actor=actor)
    console.print(f"{info.ref}: {len(info.evidence)} evidence record(s): "
                  + ", ".join(e.kind for e in info.evidence), highlight=False)


@registry_app.command("grant")
def grant_command(who: Annotated[str, typer.Argument(help="Who gets the role.", show_default=False)],
                  role: Annotated[str, typer.Argument(help="approver or admin.", show_default=False)],
                  actor: Actor = None, home: Home = None) -> None:
    """Give someone the approver or admin role. A registry's first grant must make an admin
    (`bastion registry grant root admin --as root`); after that only an admin grants."""
    with user_errors(), _registry(home, create=True) as registry:
        registry.grant(who, role, actor=actor)  # type: ignore[arg-type] - checked inside
    console.print(f"{who} is now a registry {role}", highlight=False)


@registry_app.command("gates")
def gates_command(ref: Ref, home: Home = None) -> None:
    """Show the version's release gates: each of its threat model's gates on its evidence."""
    with user_errors(), _registry(home) as registry:
        gates = registry.gates(ref)
        has_threat_model = registry.version(ref).threat_sha256 is not None
    _print_gates(gates, has_threat_model)
    if not gates or any(g.get("status") != "pass" for g in gates):
        raise typer.Exit(1)


@registry_app.command("approve")
def approve_command(ref: Ref, comment: Annotated[str, typer.Option(help="Why.")] = "",
                    actor: Actor = None, home: Home = None) -> None:
    """Approve a version; refused while its gates fail. It is approved once two approvers have approved."""
    with user_errors(), _registry(home) as registry:
        outcome = registry.approve(ref, comment=comment, actor=actor)
    state = "approved" if outcome.approved else f"{len(outcome.approvers)} of {outcome.needed} approvals"
    console.print(f"{outcome.ref}: {state} ({', '.join(outcome.approvers)})", highlight=False)


@registry_app.command("promote")
def promote_command(ref: Ref, alias: Alias = "production", actor: Actor = None, home: Home = None) -> None:
    """Point an alias (default production) at an approved version; a serving gateway follows it."""
    with user_errors(), _registry(home) as registry:
        info = registry.promote(ref, alias=alias, actor=actor)
    console.print(f"{info.name}:{alias} -> version {info.number}", highlight=False)


@registry_app.command("rollback")
def rollback_command(name: Annotated[str, typer.Argument(help="The model (NAME, or NAME:ALIAS for another alias).",
                                                         show_default=False)],
                     alias: Alias = "production", actor: Actor = None, home: Home = None) -> None:
    """Point an alias back at the version it named before its last promotion."""
    if ":" in name:  # NAME:ALIAS, as every other command names a version
        name, alias = name.split(":", 1)
    with user_errors(), _registry(home) as registry:
        info = registry.rollback(name, alias=alias, actor=actor)
    console.print(f"{info.name}:{alias.strip()} rolled back to version {info.number}", highlight=False)


@registry_app.command("list")
def list_command(name: Annotated[str | None, typer.Argument(help="A model (default: every model).",
                                                            show_default=False)] = None,
                 home: Home = None) -> None:
    """List models, or one model's versions with their status, aliases and evidence."""
    with user_errors(), _registry(home) as registry:
        if name is None:
            for model in registry.models():
                console.print(model, highlight=False)
            return
        versions = registry.versions(name)
    # Version, status, aliases (one a line) and the date are never shortened (a narrow terminal printed
    # `registe…`): Rich narrows only the other columns, which fold onto more lines rather than losing their ends.
    table = Table()
    for header in ("version", "status", "aliases"):
        table.add_column(header, no_wrap=True)
    for header in ("evidence", "approvers", "registered by"):
        table.add_column(header, overflow="fold")
    table.add_column("at", no_wrap=True)
    for info in versions:
        table.add_row(str(info.number), info.status, "\n".join(info.aliases), "\n".join(e.kind for e in info.evidence),
                      "\n".join(info.approvers), info.created_by, f"{info.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@registry_app.command("show")
def show_command(ref: Ref, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                 home: Home = None) -> None:
    """One version: artifacts with hashes and signatures, evidence, approvals, aliases."""
    with user_errors(), _registry(home) as registry:
        info = registry.version(ref)
    if as_json:
        console.print_json(info.model_dump_json())
        return
    _print_version(info)


@registry_app.command("card")
def card_command(ref: Ref,
                 form: Annotated[str, typer.Option("--format", help="md, html or cyclonedx (a CycloneDX 1.6 "
                                                   "ML-BOM, JSON).")] = "md",
                 out: Annotated[Path | None, typer.Option(help="Write it here instead of printing it.",
                                                          show_default=False)] = None,
                 home: Home = None) -> None:
    """The version's model card, from the registry: artifacts, threat model, gates, evidence, approvals."""
    from bastion.governance.card import CARD_FORMATS, model_card, render_card

    with user_errors(), _registry(home) as registry:
        if form not in CARD_FORMATS:
            raise InputError(f"--format {form!r}: use one of {', '.join(CARD_FORMATS)}")
        text = render_card(model_card(registry, ref), form)  # type: ignore[arg-type] - checked above
    if out is None:
        typer.echo(text)
        return
    with user_errors():
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as error:
            raise InputError(f"cannot write the card to {out}: {error.strerror or error}") from None
    console.print(f"wrote {out}", highlight=False)


@registry_app.command("verify")
def verify_command(ref: Ref, home: Home = None) -> None:
    """Re-hash the version's stored artifacts and check their signatures; exit 1 when one was changed."""
    with user_errors(), _registry(home) as registry:
        problems = registry.verify(ref)
        signed = any(a.signed_by for a in registry.version(ref).artifacts)
    for problem in problems:
        errors.print(f"[bold red]TAMPERED[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"{ref}: every artifact matches its hash" + (" and its signature" if signed else ""),
                  highlight=False)


def _print_gates(gates: list[dict], has_threat_model: bool) -> None:
    if not gates:
        errors.print("no release gates: " + ("its threat model has no `requires:` under any attack path"
                                             if has_threat_model else
                                             "the version has no threat model (register it with --threat)"))
        return
    table = Table("attack path", "gate", "status", "value", "threshold")
    for gate in gates:
        status = gate.get("status", "?")
        colour = {"pass": "green", "fail": "red"}.get(status, "yellow")
        table.add_row(str(gate.get("path", "")), str(gate.get("description") or gate.get("gate", "")),
                      f"[{colour}]{status}[/]", _number(gate.get("value")),
                      f"{'≥' if gate.get('bound') == 'min' else '≤'} {_number(gate.get('threshold'))}")
    console.print(table)


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def _print_version(info: VersionInfo) -> None:
    console.print(f"[bold]{info.ref}[/] {info.status}  aliases: {', '.join(info.aliases) or '-'}  "
                  f"registered by {info.created_by} at {info.created_at:%Y-%m-%d %H:%M}", highlight=False)
    console.print(f"model: {info.model_spec}  threat model (document sha256): {info.threat_sha256 or '-'}",
                  highlight=False)
    for artifact in info.artifacts:
        signed = f", signed by {artifact.signed_by[:16]}" if artifact.signed_by else ""
        console.print(f"  {artifact.role:14s} {artifact.name}  sha256 {artifact.sha256}{signed}", highlight=False)
    for evidence in info.evidence:
        console.print(f"  evidence {evidence.kind:10s} {evidence.source}  by {evidence.attached_by}", highlight=False)
    console.print(f"approvers: {', '.join(info.approvers) or '-'}", highlight=False)
