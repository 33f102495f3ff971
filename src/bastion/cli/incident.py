"""``bastion incident open|link|close|list|show``: incidents on served models, in the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bastion.cli.console import console, user_errors
from bastion.cli.data_versions import Actor, Home

if TYPE_CHECKING:
    from bastion.governance.incidents import Incident
    from bastion.storage.database import Database

incident_app = typer.Typer(help="Incidents: open one on a model, link requests, versions and actions, close it.",
                           no_args_is_help=True)
IncidentId = Annotated[int, typer.Argument(help="The incident's number.", show_default=False)]


@contextmanager
def _database(home: Path | None) -> Iterator[Database]:
    from bastion.storage.database import open_database

    database = open_database(home=home, create=False)
    try:
        yield database
    finally:
        database.dispose()


@incident_app.command("open")
def open_command(ref: Annotated[str, typer.Argument(help="The model, or one version: NAME or NAME:VERSION.",
                                                    show_default=False)],
                 summary: Annotated[str, typer.Option(help="What happened.", show_default=False)],
                 actor: Actor = None, home: Home = None) -> None:
    """Open an incident on a registered model (or one of its versions)."""
    from bastion.governance.incidents import open_incident

    with user_errors(), _database(home) as database:
        incident = open_incident(database, ref, summary=summary, actor=actor)
    console.print(f"opened incident {incident.id} on {ref}", highlight=False)


@incident_app.command("link")
def link_command(incident_id: IncidentId,
                 request: Annotated[list[str] | None, typer.Option(help="A request id from the audit log "
                                                                   "(repeat).", show_default=False)] = None,
                 version: Annotated[list[str] | None, typer.Option(help="A version NAME:NUMBER (repeat).",
                                                                   show_default=False)] = None,
                 action: Annotated[list[str] | None, typer.Option(help="An action taken, in words (repeat).",
                                                                  show_default=False)] = None,
                 actor: Actor = None, home: Home = None) -> None:
    """Link requests, versions and actions to an open incident."""
    from bastion.governance.incidents import link_incidents

    links = [("request", r) for r in request or []] + [("version", v) for v in version or []] \
        + [("action", a) for a in action or []]
    with user_errors(), _database(home) as database:
        if not links:
            from bastion.core.errors import InputError

            raise InputError("link something: --request REQ_ID, --version NAME:NUMBER or --action 'what was done'")
        incident = link_incidents(database, incident_id, links, actor=actor)  # type: ignore[arg-type]
    console.print(f"incident {incident_id}: {len(incident.links)} link(s)", highlight=False)


@incident_app.command("close")
def close_command(incident_id: IncidentId,
                  resolution: Annotated[str, typer.Option(help="How it was resolved.", show_default=False)],
                  actor: Actor = None, home: Home = None) -> None:
    """Close an incident with its resolution."""
    from bastion.governance.incidents import close_incident

    with user_errors(), _database(home) as database:
        close_incident(database, incident_id, resolution=resolution, actor=actor)
    console.print(f"closed incident {incident_id}", highlight=False)


@incident_app.command("list")
def list_command(model: Annotated[str | None, typer.Option(help="Only this model's.", show_default=False)] = None,
                 status: Annotated[str | None, typer.Option(help="open or closed.", show_default=False)] = None,
                 home: Home = None) -> None:
    """Incidents, newest first."""
    from bastion.governance.incidents import list_incidents

    with user_errors(), _database(home) as database:
        incidents = list_incidents(database, model=model, status=status)
    table = Table("id", "model", "status", "opened", "by", "links", "summary")
    for incident in incidents:
        table.add_row(str(incident.id), _on(incident), incident.status, f"{incident.opened_at:%Y-%m-%d %H:%M}",
                      incident.opened_by, str(len(incident.links)), incident.summary)
    console.print(table)


@incident_app.command("show")
def show_command(incident_id: IncidentId, home: Home = None) -> None:
    """One incident with its links and resolution."""
    from bastion.governance.incidents import get_incident

    with user_errors(), _database(home) as database:
        incident = get_incident(database, incident_id)
    console.print(f"[bold]incident {incident.id}[/] on {_on(incident)}: {incident.status}, opened by "
                  f"{incident.opened_by} at {incident.opened_at:%Y-%m-%d %H:%M}", highlight=False)
    console.print(incident.summary, highlight=False)
    for link in incident.links:
        console.print(f"  {link.kind:8s} {link.target}  ({link.linked_by})", highlight=False)
    if incident.resolution:
        console.print(f"resolved by {incident.closed_by}: {incident.resolution}", highlight=False)


def _on(incident: Incident) -> str:
    return incident.model if incident.version is None else f"{incident.model}:{incident.version}"
