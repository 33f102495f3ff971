"""Errors the gateway answers with: an HTTP status, a short machine-readable code, and a message that
says what to fix. Every error body is ``{"error": CODE, "detail": MESSAGE}``."""

from __future__ import annotations

from starlette.responses import JSONResponse


class GatewayError(Exception):
    """A request the gateway refuses. ``headers`` go into the answer (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, code: str, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer ``{"error": code, "detail": detail}`` with ``status`` and ``headers``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def invalid_input(detail: str) -> GatewayError:
    """422: the request is well-formed JSON but its tensor breaks the policy's input rules."""
    return GatewayError(422, "invalid_input", detail)


def unauthenticated(detail: str) -> GatewayError:
    """401 with the ``WWW-Authenticate: Bearer`` challenge."""
    return GatewayError(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> GatewayError:
    """403: authenticated, but the key's role or scopes do not allow this."""
    return GatewayError(403, "forbidden", detail)


def not_found(detail: str) -> GatewayError:
    """404: no such model, review or request."""
    return GatewayError(404, "not_found", detail)


#: The error answers every protected route may give, for the OpenAPI schema.
ErrorResponses: dict[int | str, dict] = {
    status: {"description": text, "content": {"application/json": {"schema": {
        "type": "object", "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {}}}}}}
    for status, text in ((401, "no valid API key"), (403, "the key's role or scopes do not allow this"),
                         (404, "no such model or record"), (413, "request body too large"),
                         (415, "body is not JSON"), (422, "the request breaks the input rules or is refused"),
                         (429, "a rate limit or budget is reached"))
}
