"""Gateway administration from the command line: ``bastion keys``, ``bastion review``, ``bastion replay``
and ``bastion audit verify``. They work on the gateway's database directly, so they need the same
``--home`` / ``BASTION_DATABASE_URL`` and ``BASTION_SECRET_KEY`` as ``bastion serve``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from bastion.cli.console import console, errors, user_errors

Home = Annotated[Path | None, typer.Option(help="bastion's state folder (default $BASTION_HOME or .bastion).")]
keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.", no_args_is_help=True)
review_app = typer.Typer(help="The human-review queue of escalated requests.", no_args_is_help=True)
audit_app = typer.Typer(help="The gateway's audit log.", no_args_is_help=True)


def _database(home: Path | None, *, create: bool = False):
    from bastion.storage.database import open_database

    return open_database(home=home, create=create)


def _settings(home: Path | None):
    from bastion.gateway.settings import GatewaySettings

    return GatewaySettings(**({"home": home} if home is not None else {}))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who the key is for.")],
    role: Annotated[str, typer.Option(help="client, reviewer or admin.")] = "client",
    scope: Annotated[list[str] | None, typer.Option(help="A model name the key may query, or 'guard' "
                                                         "for /v1/guard/* (repeat); default every model and the "
                                                         "guard.")] = None,
    rate: Annotated[str | None, typer.Option(help="Request rate, e.g. 100/minute (default: the gateway's).")] = None,
    budget: Annotated[str | None, typer.Option(help="Query budget, e.g. 50000/day (default: the gateway's).")] = None,
    output: Annotated[str | None, typer.Option(help="Output policy: full, top-k, rounded or label "
                                                    "(default: the policy file's).")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="Days until the key expires.")] = None,
    home: Home = None,
    as_: Annotated[str | None, typer.Option("--as", help="Who creates it (default $BASTION_USER).")] = None,
) -> None:
    """Create a key and print it once: it is stored only as a hash."""
    from bastion.gateway.keys import create_key
    from bastion.storage.ledger import append, current_actor

    with user_errors():
        settings = _settings(home)
        expires = None if expires_in_days is None else datetime.now(timezone.utc) + timedelta(days=expires_in_days)
        actor = current_actor(as_)
        with _database(settings.home, create=True) as database, database.transaction() as session:
            row, key = create_key(session, secret=settings.secret_key.get_secret_value(), name=name, role=role,
                                  scopes=scope, rate=rate, budget=budget, output=output, expires_at=expires,
                                  actor=actor)
            append(session, action="key.create", subject=f"key:{row.id}", actor=actor,
                   payload={"name": row.name, "role": row.role, "scopes": row.scopes})
    errors.print(f"created {row.role} key {row.id} for {row.name}; this is the only time it is shown:")
    console.print(key, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(home: Home = None) -> None:
    """List the keys (ids, roles, scopes, limits, state; never the keys themselves)."""
    from bastion.gateway.keys import list_keys

    with user_errors(), _database(_settings(home).home) as database, database.sessions() as session:
        rows = list_keys(session)
    table = Table(_id_column("id", [row.id for row in rows]), "name", "role", "scopes", "rate", "budget", "output",
                  "state")
    now = datetime.now(timezone.utc)
    for row in rows:
        expires = row.expires_at.replace(tzinfo=timezone.utc) if row.expires_at and not row.expires_at.tzinfo \
            else row.expires_at
        state = "revoked" if row.revoked_at else "expired" if expires and expires <= now else "active"
        table.add_row(row.id, row.name, row.role, ",".join(row.scopes), row.rate or "default",
                      row.budget or "default", row.output or "policy", state)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")], home: Home = None,
                as_: Annotated[str | None, typer.Option("--as", help="Who revokes it.")] = None) -> None:
    """Revoke a key. Running gateways refuse it within BASTION_KEY_CACHE_SECONDS (2 s by default)."""
    from bastion.gateway.keys import revoke_key
    from bastion.storage.ledger import append, current_actor

    with user_errors(), _database(_settings(home).home) as database, database.transaction() as session:
        row = revoke_key(session, key_id)
        append(session, action="key.revoke", subject=f"key:{row.id}", actor=current_actor(as_), payload={})
    errors.print(f"revoked {key_id} ({row.name})")


@review_app.command("list")
def review_list(status: Annotated[str, typer.Option(help="pending, answered, refused or all.")] = "pending",
                home: Home = None) -> None:
    """List review cases, oldest first."""
    from bastion.gateway.review import list_cases

    with user_errors(), _database(_settings(home).home) as database, database.sessions() as session:
        cases = list_cases(session, status=status, limit=1000)
    table = Table(_id_column("review", [case.id for case in cases]),
                  _id_column("request", [case.request_id for case in cases]), "key", "created", "status", "reasons")
    for case in cases:
        table.add_row(case.id, case.request_id, case.key_id or "", case.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                      case.status, "; ".join(case.reasons)[:80])
    console.print(table)


def _id_column(header: str, ids: list[str]) -> Column:
    """A column that shows every id whole, however narrow the terminal (the other columns are cut instead): the ids
    are what `keys revoke` and `review decide` take."""
    return Column(header, no_wrap=True, min_width=max([len(header), *map(len, ids)]))


@review_app.command("decide")
def review_decide(
    review_id: Annotated[str, typer.Argument(help="The case (rev_...).")],
    action: Annotated[str, typer.Option(help="approve, refuse or relabel.")],
    label: Annotated[list[int] | None, typer.Option(help="For relabel: one label per instance (repeat).")] = None,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    home: Home = None,
    as_: Annotated[str | None, typer.Option("--as", help="Who decides (default $BASTION_USER).")] = None,
) -> None:
    """Decide a pending case from the command line (the console at /console does the same)."""
    from bastion.gateway.review import decide
    from bastion.storage.ledger import current_actor

    with user_errors(), _database(_settings(home).home) as database, database.transaction() as session:
        case = decide(session, review_id, action=action, reviewer=current_actor(as_), labels=label, note=note)
    errors.print(f"{review_id}: {case.status}")


@audit_app.command("verify")
def audit_verify(home: Home = None) -> None:
    """Recompute the audit log's hash chain and compare its end with the head anchor; exit 1 on tampering."""
    from bastion.gateway.audit import audit_anchor, verify_audit

    with user_errors(), _database(_settings(home).home) as database, database.sessions() as session:
        check = verify_audit(session, anchor=audit_anchor(database))
    for warning in check.warnings:
        errors.print(f"warning: {warning}")
    if check.ok:
        anchored = "chain and head anchor verified" if check.anchored_seq is not None else "chain verified (no anchor)"
        console.print(f"audit log intact: {check.checked} records, {anchored}")
        return
    for problem in check.problems[:20]:
        errors.print(f"[bold red]record {problem.seq}:[/] {problem.problem}", highlight=False)
    raise typer.Exit(1)


def replay_command(
    request_id: Annotated[str, typer.Argument(help="The request's id (req_..., from X-Request-Id).")],
    model: Annotated[str | None, typer.Option(help="The model the gateway served (same spec as bastion serve); "
                                                    "not needed for a text-guard call.")] = None,
    weights: Annotated[str | None, typer.Option(help="Its weights.")] = None,
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Re-run a logged prediction (or text-guard call) with the same model file, policy and input; exit 1 unless
    bit-for-bit equal."""
    import torch

    from bastion.gateway.replay import replay
    from bastion.models.loading import load_classifier

    torch.set_num_threads(1)
    with user_errors():
        loaded = None if model is None else load_classifier(model, weights=weights)
        with _database(_settings(home).home) as database, database.sessions() as session:
            result = replay(session, request_id, loaded=loaded)
    if as_json:
        console.print_json(json.dumps({**result.model_dump(mode="json"), "identical": result.identical}))
    else:
        for check, same in result.checks.items():
            console.print(f"{check:14s} {'identical' if same else 'DIFFERENT'}")
        console.print(f"decision: logged {result.decision}, replayed {result.replayed_decision}")
    if not result.identical:
        raise typer.Exit(1)

