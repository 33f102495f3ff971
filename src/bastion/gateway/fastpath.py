"""The inference routes without FastAPI's per-request machinery, for well-formed requests.

``POST /v2/models/{name}/infer`` (and its ``/versions/{version}/`` form) is the gateway's hot path, and for a small
model FastAPI's routing, dependency solving, body model and response handling are a large share of its CPU:
measured in-process over six alternating pairs, requests took 116-409 µs less CPU each (1,866 against 2,103 µs at
the median) when answered through this middleware. It sits inside the access log and the body limits, so requests
are logged, counted and limited as before, and it answers only what it can answer exactly as the route would:

* a key that does not authenticate, a body that is not JSON, or a body whose fields are missing, of another type or
  out of bounds goes on to the app (with the body as read), whose route gives its own 401 or 422;
* a well-formed request runs the route's own function (:func:`~bastion.gateway.routes.inference.answer_infer`),
  and its refusals are the app's error answers.

Everything else passes through untouched, and so does every request of an app served under a ``root_path``
(``--root-path``, or mounted in another app). The routes stay in the app and in its OpenAPI schema.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request

from bastion.gateway.deps import authenticate
from bastion.gateway.errors import GatewayError, error_response
from bastion.gateway.inference import TensorIn
from bastion.gateway.middleware import replaying
from bastion.gateway.routes.inference import answer_infer
from bastion.gateway.schemas import InferInput, InferRequest

INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


def _longest(model: type[BaseModel], name: str) -> int:
    """The ``max_length`` the schema ``model`` gives its field ``name``."""
    return next(rule.max_length for rule in model.model_fields[name].metadata if hasattr(rule, "max_length"))


#: The schema's bounds, read from it: longer or larger goes to the app to be refused.
MAX_ID, MAX_OUTPUTS = _longest(InferRequest, "id"), _longest(InferRequest, "outputs")
MAX_NAME, MAX_DATATYPE = _longest(InferInput, "name"), _longest(InferInput, "datatype")
MAX_DIMENSIONS = _longest(InferInput, "shape")


class InferFastPath:
    """ASGI middleware answering well-formed OIP v2 inference requests itself (see the module's docstring).

    Args:
        app: the rest of the stack.
        routes: the app's route objects for the two inference paths, by whether the path names a version; kept
            in the request's scope as FastAPI would, for the access log's route label.
    """

    def __init__(self, app: Any, *, routes: dict[bool, Any]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" \
            and not scope.get("root_path") else None
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = scope["app"].state.gateway
        try:
            key = authenticate(request, state)
        except GatewayError:  # the route answers it, with its own checks in its own order
            await self.app(scope, receive, send)
            return
        route = self.routes[match["version"] is not None]
        try:
            try:
                body = await request.body()
            except ClientDisconnect:  # nobody to answer; the access log records a 400 under the route
                scope["route"] = route
                await error_response(400, "client_disconnected", "the client closed the connection before its "
                                     "body was read")(scope, receive, send)
                return
            parsed = well_formed(body)
            if parsed is None:
                await self.app(scope, replaying([{"type": "http.request", "body": body, "more_body": False}], receive),
                               send)
                return
            scope["route"] = route
            client_id, tensor = parsed
            response = await answer_infer(state, key, match["name"], match["version"], tensor, client_id)
        except GatewayError as error:  # a refusal
            scope["route"] = route
            response = error_response(error.status, error.code, error.detail, error.headers)
        await response(scope, receive, send)


def well_formed(body: bytes) -> tuple[str | None, TensorIn] | None:
    """``(id, tensor)`` of an OIP v2 request body that fits the route's schema in its plain form (strings where
    strings go, integers for the shape, within the bounds), else ``None``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    client_id, outputs, parameters = document.get("id"), document.get("outputs"), document.get("parameters")
    inputs = document.get("inputs")
    if not (_text(client_id, MAX_ID) or client_id is None) or not (parameters is None or isinstance(parameters, dict)):
        return None
    if outputs is not None and not (isinstance(outputs, list) and len(outputs) <= MAX_OUTPUTS and all(
            isinstance(output, dict) and _text(output.get("name"), MAX_NAME) for output in outputs)):
        return None
    if not (isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict)):
        return None
    tensor = inputs[0]
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not (_text(tensor.get("name"), MAX_NAME) and _text(datatype, MAX_DATATYPE) and isinstance(data, list)
            and isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(type(d) is int for d in shape)):
        return None
    return client_id, TensorIn(shape, datatype, data)


def _text(value: object, longest: int) -> bool:
    return isinstance(value, str) and len(value) <= longest
