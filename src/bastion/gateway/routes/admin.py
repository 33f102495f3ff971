"""Admin routes: API keys, lifting an extraction throttle, the audit log's check and records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from bastion.core.errors import InputError
from bastion.gateway.audit import verify_audit
from bastion.gateway.deps import Admin, State
from bastion.gateway.errors import ErrorResponses, invalid_input, not_found
from bastion.gateway.keys import create_key, existing_key, list_keys, revoke_key
from bastion.gateway.schemas import KeyCreate, KeyCreated, KeyRead
from bastion.storage.tables import ApiKeyRow, AuditRecordRow

router = APIRouter(prefix="/admin", tags=["admin"])


def _read(row: ApiKeyRow) -> KeyRead:
    return KeyRead.model_validate(row, from_attributes=True)


@router.post("/keys", response_model=KeyCreated, status_code=201, responses=ErrorResponses)
def add_key(body: KeyCreate, state: State, key: Admin) -> KeyCreated:
    """Create a key; the answer holds the key itself, which is never shown again."""
    try:
        with state.database.transaction() as session:
            row, secret = create_key(session, secret=state.settings.secret_key.get_secret_value(), name=body.name,
                                     role=body.role, scopes=body.scopes, rate=body.rate, budget=body.budget,
                                     output=body.output, expires_at=body.expires_at, actor=f"{key.name} ({key.id})")
            created = KeyCreated(**_read(row).model_dump(), key=secret)
    except InputError as error:
        raise invalid_input(str(error)) from None
    return created


@router.get("/keys", response_model=list[KeyRead], responses=ErrorResponses)
def all_keys(state: State, key: Admin) -> list[KeyRead]:
    """Every key (never their secrets)."""
    with state.database.sessions() as session:
        return [_read(row) for row in list_keys(session)]


@router.delete("/keys/{key_id}", response_model=KeyRead, responses=ErrorResponses)
def remove_key(key_id: str, state: State, key: Admin) -> KeyRead:
    """Revoke a key (it stays listed, marked revoked); effective at once on this gateway."""
    try:
        with state.database.transaction() as session:
            row = _read(revoke_key(session, key_id))
    except InputError as error:
        raise not_found(str(error)) from None
    state.keys.forget()
    return row


@router.delete("/keys/{key_id}/throttle", responses=ErrorResponses)
def lift_throttle(key_id: str, state: State, key: Admin) -> dict[str, Any]:
    """Lift the throttle an extraction alert put on a key, and restart its monitoring (404 for a key that does
    not exist)."""
    try:
        with state.database.sessions() as session:
            existing_key(session, key_id)
    except InputError as error:
        raise not_found(str(error)) from None
    throttled = key_id in state.throttled_keys
    state.throttled_keys.discard(key_id)
    if state.monitor is not None:
        state.monitor.reset(key_id)
    return {"key_id": key_id, "was_throttled": throttled}


@router.get("/audit/verify", responses=ErrorResponses)
def audit_verify(state: State, key: Admin) -> dict[str, Any]:
    """Recompute the audit log's hash chain and compare it with its head anchor."""
    with state.database.sessions() as session:
        check = verify_audit(session, anchor=state.audit.anchor)
    return check.model_dump(mode="json")


@router.get("/audit/{request_id}", responses=ErrorResponses)
def audit_record(request_id: str, state: State, key: Admin) -> dict[str, Any]:
    """One audit record by request id."""
    with state.database.sessions() as session:
        row = session.scalars(select(AuditRecordRow).where(AuditRecordRow.request_id == request_id)).first()
        if row is None:
            raise not_found(f"no audit record for request {request_id!r}")
        return {column.name: _plain(getattr(row, column.name)) for column in AuditRecordRow.__table__.columns}


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
