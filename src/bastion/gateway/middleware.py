"""Pure ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware``): body size and type limits, and
one JSON log line plus metrics per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bastion.gateway.errors import GatewayError
from bastion.gateway.metrics import GatewayMetrics

logger = logging.getLogger("bastion.gateway.access")
JSON_TYPES = ("application/json",)
FORM_PREFIXES = ("/console",)  # the console's forms post urlencoded bodies


def _error(status: int, code: str, detail: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"error": code, "detail": detail}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimits:
    """413 for bodies over ``max_bytes`` (by ``Content-Length``, or counted while streaming), 415 for a POST
    whose body is not JSON (outside the console's forms)."""

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
            await self._reply(send, 413, "too_large", f"the body may hold at most {self.max_bytes} bytes")
            return
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        if not scope["path"].startswith(FORM_PREFIXES) and kind not in JSON_TYPES:
            await self._reply(send, 415, "unsupported_media_type",
                              f"send the body as JSON with 'Content-Type: application/json' (got {kind or 'none'})")
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise GatewayError(413, "too_large", f"the body may hold at most {self.max_bytes} bytes")
            return message

        return counted

    @staticmethod
    async def _reply(send, status: int, code: str, detail: str) -> None:
        start, body = _error(status, code, detail)
        await send(start)
        await send(body)


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
