"""Pure ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware``): body size and type limits, and
one JSON log line plus metrics per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bastion.gateway.metrics import GatewayMetrics

logger = logging.getLogger("bastion.gateway.access")
JSON_TYPES = ("application/json",)
FORM_PREFIXES = ("/console",)  # the console's forms post urlencoded bodies


def _error(status: int, code: str, detail: str, *, close: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    start = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


class BodyLimits:
    """413 for bodies over ``max_bytes`` (by ``Content-Length``, or, for a body streamed without one, counted as it
    is read, before any route sees it), 415 for a POST whose body is not JSON (outside the console's forms)."""

    def __init__(self, app, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(send)
            return
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        if not scope["path"].startswith(FORM_PREFIXES) and kind not in JSON_TYPES:
            await self._reply(send, 415, "unsupported_media_type",
                              f"send the body as JSON with 'Content-Type: application/json' (got {kind or 'none'})")
            return
        if length is None or b"transfer-encoding" in headers:  # streamed: the server reads it to its last chunk,
            messages = await self._read_streamed(receive)   # whatever Content-Length says beside it
            if messages is None:
                await self._too_large(send)
                return
            receive = replaying(messages, receive)
            del messages  # the replay gives each message up as it hands it over
        await self.app(scope, receive, send)

    async def _read_streamed(self, receive) -> list[dict[str, Any]] | None:
        """The messages of a body sent without ``Content-Length``, read to its end (or to the client leaving);
        ``None`` once it passes ``max_bytes``."""
        messages: list[dict[str, Any]] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: the app hears it as it would have
                return messages
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, send) -> None:
        detail = (f"the body may hold at most {self.max_bytes} bytes (the gateway's BASTION_MAX_BODY_BYTES); "
                  "split the request")
        await self._reply(send, 413, "too_large", detail, close=True)

    @staticmethod
    async def _reply(send, status: int, code: str, detail: str, *, close: bool = False) -> None:
        start, body = _error(status, code, detail, close=close)
        await send(start)
        await send(body)


def replaying(messages: list[dict[str, Any]], receive):
    """A ``receive`` that gives ``messages`` (already read from the client; the list is emptied as they are handed
    over) again, then the client's own."""
    messages.reverse()

    async def replay() -> dict[str, Any]:
        return messages.pop() if messages else await receive()

    return replay


class AccessLog:
    """Counts and times every request by route template and status, and logs it as one JSON line."""

    def __init__(self, app, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            state = scope.get("state") or {}
            logger.info("request", extra={"method": scope["method"], "path": scope["path"], "route": route,
                                          "status": status, "ms": round(seconds * 1000, 3),
                                          "key_id": state.get("key_id")})
