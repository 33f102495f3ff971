"""The console's governance pages: the registry (models, versions, their gates and evidence), approving a
version, and incidents. Approving in the console acts as the API key's name: that name must hold the
registry's ``approver`` or ``admin`` role (``bastion registry grant NAME approver``), and every rule of
``bastion registry approve`` applies (gates, evidence, two people, not the registrant).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bastion.core.errors import InputError
from bastion.gateway.console import ConsoleRoute, check_csrf, csrf_token, render
from bastion.gateway.deps import Reviewer, State
from bastion.gateway.errors import not_found
from bastion.gateway.state import GatewayState

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _registry(state: GatewayState):
    from bastion.governance.registry import ModelRegistry

    return ModelRegistry(state.database)  # shares the gateway's database; not closed here


@router.get("/registry")
def registry_page(request: Request, state: State, viewer: Reviewer) -> HTMLResponse:
    """Every registered model with its versions: status, aliases, evidence, approvers."""
    registry = _registry(state)
    models = [(name, list(reversed(registry.versions(name)))) for name in registry.models()]
    return render(request, "registry.html", viewer=viewer, models=models)


def _version_page(request: Request, state: GatewayState, viewer, name: str, number: int, *, status: int = 200,
                  error: str | None = None) -> HTMLResponse:
    from bastion.governance.card import model_card

    try:
        card = model_card(_registry(state), f"{name}:{number}")
    except InputError as problem:
        raise not_found(str(problem)) from None
    return render(request, "version.html", status=status, viewer=viewer, card=card, error=error,
                  csrf=csrf_token(state, viewer.id, f"approve:{name}:{number}"))


@router.get("/registry/{name}/{number}")
def version_page(request: Request, name: str, number: int, state: State, viewer: Reviewer) -> HTMLResponse:
    """One version: artifacts, threat model, gates with their values, evidence, approvals, and the approve form."""
    return _version_page(request, state, viewer, name, number)


@router.post("/registry/{name}/{number}/approve")
def approve(request: Request, name: str, number: int, state: State, viewer: Reviewer,
            csrf: Annotated[str, Form(max_length=128)], comment: Annotated[str, Form(max_length=2000)] = ""
            ) -> Response:
    """Approve as the key's name; a refusal shows the version again with the reason (422)."""
    check_csrf(state, viewer, f"approve:{name}:{number}", csrf)
    try:
        _registry(state).approve(f"{name}:{number}", comment=comment, actor=viewer.name)
    except InputError as problem:
        return _version_page(request, state, viewer, name, number, status=422, error=str(problem))
    return RedirectResponse(f"/console/registry/{name}/{number}", status_code=303)


@router.get("/incidents")
def incidents_page(request: Request, state: State, viewer: Reviewer, status: str = "open") -> HTMLResponse:
    """Incidents (open by default, or closed, all), newest first, with what each is linked to."""
    from bastion.governance.incidents import list_incidents

    if status not in ("open", "closed", "all"):
        raise not_found(f"no incident status {status!r}; choose open, closed or all")
    incidents = list_incidents(state.database, status=None if status == "all" else status)
    return render(request, "incidents.html", viewer=viewer, incidents=incidents, shown=status)
