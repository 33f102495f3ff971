"""JSON in and out of the inference routes through orjson: an OIP v2 body of one 28x28 image holds 784
numbers, and the standard library's parser and writer cost more per request than the gateway's key lookup,
limits and validation together.

``FastJSONRoute`` is a FastAPI route class whose requests parse their body with orjson (the schema, the
validation and the 422 answers stay FastAPI's: orjson's decode error is a ``json.JSONDecodeError``);
``FastJSONResponse`` writes its body with orjson. orjson refuses ``NaN`` and ``Infinity`` literals in a
request (not JSON), where the standard library would accept them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class FastJSONRequest(Request):
    """A request whose ``json()`` is parsed by orjson."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class FastJSONRoute(APIRoute):
    """A route that hands its endpoint a :class:`FastJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return handle


class FastJSONResponse(JSONResponse):
    """A JSON response written by orjson (``content`` of JSON types: dicts with string keys, lists, str,
    int, float, bool, None)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
