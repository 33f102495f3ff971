"""Open Inference Protocol v2 (health, ready, server and model metadata, infer) and the simple ``/predict``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute

from bastion import __version__
from bastion.gateway.deps import Caller, KeyedRoute, State, keyed
from bastion.gateway.errors import ErrorResponses, forbidden, not_found
from bastion.gateway.inference import TensorIn, infer, nested_tensor
from bastion.gateway.jsonio import FastJSONResponse, FastJSONRoute
from bastion.gateway.keys import KeyInfo
from bastion.gateway.schemas import (
    InferRequest,
    InferResponse,
    PendingResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
)
from bastion.gateway.state import GatewayState
from bastion.gateway.text_pipeline import TextPipeline

#: The inference routes, authenticated by their route class (the app includes them first: a request is matched
#: against the routes in order).
infer_router = APIRouter(route_class=KeyedRoute)
router = APIRouter(route_class=FastJSONRoute)


async def _infer(name: str, version: str | None, body: InferRequest, state: GatewayState, key: KeyInfo):
    tensor = body.inputs[0]
    return await answer_infer(state, key, name, version, TensorIn(tensor.shape, tensor.datatype, tensor.data),
                              body.id)


async def answer_infer(state: GatewayState, key: KeyInfo, name: str, version: str | None, tensor: TensorIn,
                       client_id: str | None) -> FastJSONResponse:
    """The answer to an OIP v2 inference request for model ``name`` (``version``: any when ``None``).

    Raises:
        GatewayError: 404 for another model, 403 for a key without its scope, and what :func:`infer` raises.
    """
    served_model(state, name, key, version)
    result = await infer(state, key, tensor, client_id=client_id)
    return FastJSONResponse(result.body, status_code=result.status, headers={"X-Request-Id": result.request_id})


_INFER_RESPONSES = {**ErrorResponses, 202: {"model": PendingResponse, "description": "escalated to human review"}}


@infer_router.post("/v2/models/{name}/infer", tags=["inference"], response_model=InferResponse,
                   responses=_INFER_RESPONSES)
async def model_infer(name: str, body: InferRequest, request: Request):
    """Inference (OIP v2). 200 with the outputs the key's output policy allows; 202 with a review id when the
    policy escalates the request to a human reviewer; 422 when the input breaks the rules or is refused."""
    return await _infer(name, None, body, *keyed(request))


@infer_router.post("/v2/models/{name}/versions/{version}/infer", tags=["inference"], response_model=InferResponse,
                   responses=_INFER_RESPONSES)
async def model_version_infer(name: str, version: str, body: InferRequest, request: Request):
    """Inference on one version of the model."""
    return await _infer(name, version, body, *keyed(request))


@infer_router.post("/predict", tags=["inference"], response_model=PredictResponse, responses=ErrorResponses)
async def predict(body: PredictRequest, request: Request):
    """Simple JSON inference: ``{"instances": [input, ...]}`` with each input nested lists of the model's shape
    (for a text model: each input a string)."""
    state, key = keyed(request)
    served = served_model(state, state.served.name, key)
    tensor = TensorIn([len(body.instances)], "BYTES", body.instances) if served.takes_text \
        else nested_tensor(body.instances, served.pipeline.dtype)
    result = await infer(state, key, tensor)
    answer = result.body
    if result.status == 202:
        simple = PredictResponse(request_id=result.request_id, decision="review", review_id=answer["review_id"],
                                 review_url=answer["review_url"])
    else:
        simple = PredictResponse(request_id=result.request_id, decision=answer["parameters"]["decision"],
                                 predictions=_predictions(answer["outputs"]))
    return FastJSONResponse(simple.model_dump(mode="json", exclude_none=True), status_code=result.status,
                        headers={"X-Request-Id": result.request_id})


@router.get("/v2/health/live", tags=["health"])
def live() -> dict[str, bool]:
    """The process answers."""
    return {"live": True}


@router.get("/v2/health/ready", tags=["health"])
def ready(state: State) -> dict[str, bool]:
    """The model is loaded and the audit log is open."""
    return {"ready": state.audit is not None}


@router.get("/v2", tags=["metadata"])
def server_metadata() -> dict[str, Any]:
    """Server metadata (OIP v2)."""
    return {"name": "bastion", "version": __version__, "extensions": ["bastion-policy", "bastion-review"]}


def infer_routes() -> dict[bool, APIRoute]:
    """The two OIP v2 inference routes, by whether their path names a version (for ``InferFastPath``)."""
    by_path = {route.path: route for route in infer_router.routes if isinstance(route, APIRoute)}
    return {False: by_path["/v2/models/{name}/infer"], True: by_path["/v2/models/{name}/versions/{version}/infer"]}


def served_model(state: GatewayState, name: str, key: KeyInfo | None, version: str | None = None):
    served = state.served
    if name != served.name or (version is not None and version != served.version):
        wanted = name if version is None else f"{name} version {version}"
        raise not_found(f"no model {wanted!r}; this gateway serves {served.name!r} version {served.version!r}")
    if key is not None and not key.may_query(name):
        raise forbidden(f"key {key.id} may not query model {name!r} (its scopes: {', '.join(key.scopes)})")
    return served


@router.get("/v2/models/{name}/ready", tags=["health"], responses=ErrorResponses)
def model_ready(name: str, state: State) -> dict[str, Any]:
    """Whether model ``name`` is ready."""
    served_model(state, name, None)
    return {"name": name, "ready": True}


def _metadata(state: GatewayState, name: str, key: KeyInfo, version: str | None) -> dict[str, Any]:
    served = served_model(state, name, key, version)
    pipeline = served.pipeline
    parameters: dict[str, Any] = {"sha256": served.sha256, "policy_sha256": served.policy_sha256,
                                  "max_instances": pipeline.policy.input.max_instances}
    if isinstance(pipeline, TextPipeline):  # N strings
        inputs = {"name": "input", "datatype": pipeline.dtype, "shape": [-1]}
        parameters.update(max_chars=pipeline.rules.max_chars, guard=pipeline.rules.guard.model_dump(mode="json"))
    else:
        inputs = {"name": "input", "datatype": pipeline.dtype, "shape": [-1, *pipeline.input_shape]}
        parameters["bounds"] = [pipeline.low, pipeline.high]
    return {
        "name": served.name, "versions": [served.version], "platform": f"bastion-{served.kind}",
        "inputs": [inputs],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, served.num_classes]},
                    {"name": "label", "datatype": "INT64", "shape": [-1]}],
        "parameters": parameters,
    }


@router.get("/v2/models/{name}", tags=["metadata"], responses=ErrorResponses)
def model_metadata(name: str, state: State, key: Caller) -> dict[str, Any]:
    """Model metadata (OIP v2): input and output tensors, the model file's hash and the policy's."""
    return _metadata(state, name, key, None)


@router.get("/v2/models/{name}/versions/{version}", tags=["metadata"], responses=ErrorResponses)
def model_version_metadata(name: str, version: str, state: State, key: Caller) -> dict[str, Any]:
    """Metadata of one version of the model."""
    return _metadata(state, name, key, version)


def _predictions(outputs: list[dict[str, Any]]) -> list[Prediction]:
    by_name = {o["name"]: o for o in outputs}
    labels = by_name["label"]["data"]
    scores = by_name.get("probabilities")
    if scores is None:
        return [Prediction(label=label) for label in labels]
    classes = scores["shape"][1]
    rows = [scores["data"][i * classes:(i + 1) * classes] for i in range(len(labels))]
    return [Prediction(label=label, probabilities=row) for label, row in zip(labels, rows, strict=True)]
