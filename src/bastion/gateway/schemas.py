"""Request and answer bodies of the gateway's JSON routes (they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class InferInput(BaseModel):
    """One input tensor (OIP v2): values flattened in row-major order in ``data``."""

    name: str = Field(max_length=200)
    shape: list[int] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str = Field(max_length=200)


class InferRequest(BaseModel):
    """An OIP v2 inference request. ``id`` is echoed back; the gateway's own id is ``request_id``."""

    id: str | None = Field(None, max_length=200)
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = Field(None, max_length=8)
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]
    parameters: dict[str, Any]


class PendingResponse(BaseModel):
    """The answer to an escalated request: poll ``review_url`` for the reviewer's decision."""

    model_name: str
    model_version: str
    id: str | None = None
    request_id: str
    review_id: str
    status: Literal["pending"]
    review_url: str


class PredictRequest(BaseModel):
    """The simple JSON route: ``instances`` is a list of inputs, each nested lists of the model's input shape."""

    model_config = ConfigDict(extra="forbid")
    instances: list[Any] = Field(min_length=1)


class Prediction(BaseModel):
    label: int
    probabilities: list[float] | None = None


class PredictResponse(BaseModel):
    request_id: str
    decision: str
    predictions: list[Prediction] | None = None
    review_id: str | None = None
    review_url: str | None = None


class ReviewDecision(BaseModel):
    """A reviewer's decision: ``approve``, ``refuse`` or ``relabel`` (with one label per instance)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve", "refuse", "relabel"]
    labels: list[int] | None = Field(None, max_length=100_000)
    note: str | None = Field(None, max_length=2000)


class ReviewStatus(BaseModel):
    review_id: str
    request_id: str
    status: str
    model_name: str
    reasons: list[str]
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    outputs: list[InferOutput] | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["client", "reviewer", "admin"] = "client"
    scopes: list[str] = Field(default_factory=lambda: ["*"], max_length=100)
    rate: str | None = Field(None, max_length=64)
    budget: str | None = Field(None, max_length=64)
    output: Literal["full", "top-k", "rounded", "label"] | None = None
    expires_at: datetime | None = None


class KeyRead(BaseModel):
    id: str
    name: str
    role: str
    scopes: list[str]
    rate: str | None
    budget: str | None
    output: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    key: str = Field(description="the API key itself; shown once, never stored")


class GuardPromptRequest(BaseModel):
    """A prompt (or a retrieved document) to screen for injected instructions."""

    model_config = ConfigDict(extra="forbid")
    text: str


class GuardOutputRequest(BaseModel):
    """A model's reply to screen for secrets, personal data and system-prompt leaks.

    ``canaries`` are tokens planted in the system prompt (at least 8 letters or digits each; ``null`` or left out:
    none); with ``system_prompt``, a long run of it repeated in the reply is a leak; ``redact`` (JSON ``true`` or
    ``false`` only, not ``"yes"`` or ``1``) asks for the reply with every finding masked (``redacted`` in the
    verdict).
    """

    model_config = ConfigDict(extra="forbid")
    text: str
    canaries: list[str] | None = Field(default_factory=list, max_length=100)
    system_prompt: str | None = None
    redact: StrictBool = False


class ErrorBody(BaseModel):
    error: str
    detail: Any
