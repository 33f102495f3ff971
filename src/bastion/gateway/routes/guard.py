"""The text guard as a service: ``POST /v1/guard/prompt`` and ``POST /v1/guard/output``.

Both answer 200 with the guard's verdict (``flagged`` says whether the text was flagged) and the request's
id in ``X-Request-Id``. Any authenticated key whose scopes hold ``guard`` or ``*`` may call them (403
otherwise: a key scoped to models only does not get the guard); each call counts one instance against the
key's rate and budget (429 with ``Retry-After``). A text over ``guard_max_chars`` characters gets 422 saying
the limit, and an empty (or whitespace-only) prompt 422 ``invalid_input``; bodies over ``max_body_bytes`` get
413 before that. When the learned classifier cannot be loaded, the prompt route answers 503 saying why. Every
admitted call is written to the audit log (see :mod:`bastion.gateway.guard`), those refused with 422 included,
and ``bastion replay`` repeats it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from bastion.core.errors import ConfigError, InputError
from bastion.defenses.text.findings import Verdict
from bastion.gateway.deps import Caller, State
from bastion.gateway.errors import ErrorResponses, GatewayError, forbidden
from bastion.gateway.guard import GUARD_SCOPE, GuardKind, too_long, verdict_json
from bastion.gateway.inference import admit, new_request_id
from bastion.gateway.jsonio import FastJSONResponse, FastJSONRoute
from bastion.gateway.keys import KeyInfo
from bastion.gateway.schemas import GuardOutputRequest, GuardPromptRequest
from bastion.gateway.state import GatewayState

router = APIRouter(route_class=FastJSONRoute, tags=["guard"])


async def guard_key(key: Caller) -> KeyInfo:
    """The caller's key, if its scopes allow the guard (``guard`` or ``*``); 403 otherwise."""
    if not key.may_query(GUARD_SCOPE):
        raise forbidden(f"key {key.id} may not use the text guard: its scopes ({', '.join(key.scopes)}) name neither "
                        f"{GUARD_SCOPE!r} nor '*'; create a key with --scope {GUARD_SCOPE}")
    return key


GuardKey = Annotated[KeyInfo, Depends(guard_key)]


@router.post("/v1/guard/prompt", response_model=Verdict, responses=ErrorResponses)
async def guard_prompt(body: GuardPromptRequest, state: State, key: GuardKey):
    """Screen a prompt (or a retrieved document) for injected instructions, also hidden in encodings,
    invisible characters or look-alike letters. 200 with the verdict, flagged or not."""
    return await _guard(state, key, "prompt", body)


@router.post("/v1/guard/output", response_model=Verdict, responses=ErrorResponses)
async def guard_output(body: GuardOutputRequest, state: State, key: GuardKey):
    """Screen a model's reply for secrets, personal data, canary tokens and a leaked system prompt; with
    ``redact`` the verdict's ``redacted`` holds the reply with every finding masked."""
    return await _guard(state, key, "output", body)


async def _guard(state: GatewayState, key: KeyInfo, kind: GuardKind,
                 body: GuardPromptRequest | GuardOutputRequest) -> FastJSONResponse:
    """Admit, screen, log and answer one call (422 logged and raised for a text over the limit, an empty prompt or a
    bad canary)."""
    admit(state, key, 1)
    request_id = new_request_id()
    guards = state.guards
    problem = too_long(body, guards.max_chars)
    if problem is not None:
        raise await _refused(state, key, kind, request_id, "too_long", problem)
    if kind == "prompt" and not body.text.strip():
        raise await _refused(state, key, kind, request_id, "invalid_input",
                             'text is empty (or only whitespace): give the prompt to screen in "text"')
    try:
        verdict = await guards.screen(body)
    except InputError as error:
        raise await _refused(state, key, kind, request_id, "invalid_input", str(error)) from None
    except ConfigError as error:  # the gateway's fault, not the request's: not logged as the caller's
        raise GatewayError(503, "guard_unavailable", str(error), headers={"X-Request-Id": request_id}) from None
    response = verdict_json(verdict, body)
    await state.audit.append(guards.record(kind, request_id=request_id, key=key, body=body, response=response,
                                           verdict=verdict))
    state.metrics.guard_verdicts.labels(kind, str(verdict.flagged).lower()).inc()
    return FastJSONResponse(response, headers={"X-Request-Id": request_id})


async def _refused(state: GatewayState, key: KeyInfo, kind: GuardKind, request_id: str, code: str, detail: str
                   ) -> GatewayError:
    """Log a refused call (without its input); the 422 to answer it with."""
    logged: dict[str, Any] = {"error": code, "detail": detail, "request_id": request_id}
    await state.audit.append(state.guards.record(kind, request_id=request_id, key=key, body=None, response=logged,
                                                 verdict=None, status=422))
    return GatewayError(422, code, detail, headers={"X-Request-Id": request_id})
