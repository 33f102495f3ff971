"""The text guard behind the gateway: screen a prompt for injected instructions (``/v1/guard/prompt``) or a
model's reply for leaks (``/v1/guard/output``), under the key's limits, with every call in the audit log.

Each guard is described by its *parameters*, a small JSON document whose SHA-256 is the record's
``policy_sha256`` (the document is saved in the policy table, so replay finds it):

- prompt: ``{"guard": "prompt", "classifier": "default" | null, "threshold": float | null,
  "max_chars": int, "max_depth": 3, "exhaustive": false}`` (``classifier: null`` is rules only), with
  ``"long_threshold": float`` when one is set;
- output: ``{"guard": "output", "max_chars": int}``.

A record's ``inputs`` are the UTF-8 bytes of the canonical JSON of the request body (defaults filled in) as a
``uint8`` array, so the exact request is kept and hashed; ``model_sha256`` is the prompt guard's classifier
file hash (``None`` for rules only and for the output guard). :func:`rerun` repeats a logged call exactly.

Every prompt guard of a gateway (these routes' and a text model's policy step) runs on one worker thread owned
by :class:`TextGuards`; the learned classifier is loaded there on first use, once per process
(:func:`default_classifier`), shared by all of them and never used by two threads at once. The output guard is
a pure function and runs on the event loop's default thread pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from bastion import __version__
from bastion.core.errors import BastionError, ConfigError, InputError, validation_problems
from bastion.defenses.text.findings import Verdict
from bastion.defenses.text.guard import PromptGuard
from bastion.defenses.text.output import screen_output
from bastion.gateway.audit import AuditLog, PendingRecord
from bastion.gateway.keys import KeyInfo
from bastion.gateway.schemas import GuardOutputRequest, GuardPromptRequest
from bastion.storage.ledger import canonical_json

GuardKind = Literal["prompt", "output"]
#: The audit log's ``model`` of each guard's records.
GUARD_MODELS: dict[GuardKind, str] = {"prompt": "guard-prompt", "output": "guard-output"}
#: A key whose scopes hold this (or ``*``) may call the guard routes.
GUARD_SCOPE = "guard"
#: Nested decodings the gateway's prompt guard follows (``PromptGuard``'s default).
PROMPT_MAX_DEPTH = 3
_LOADING = threading.Lock()
_shipped: tuple[Any, str] | None = None  # (the shipped classifier, its file's SHA-256) once loaded
_T = TypeVar("_T")


def _load_shipped() -> tuple[Any, str]:
    """The shipped classifier and the SHA-256 of its file (``ConfigError`` when it cannot be loaded)."""
    try:
        from bastion.defenses.text import classifier as module

        loaded = module.load_default()
        data = resources.files("bastion.defenses.text").joinpath("data", module.DEFAULT_FILE).read_bytes()
    except (ImportError, OSError, BastionError) as error:
        raise ConfigError(f"the prompt guard's classifier cannot be loaded ({error}); install bastion[text], or "
                          "screen with the rules alone (BASTION_GUARD_RULES_ONLY=1, text.guard.rules_only)") from error
    return loaded, hashlib.sha256(data).hexdigest()


def default_classifier() -> Any:
    """bastion's injection classifier, loaded once per process (whichever thread asks first) and shared."""
    global _shipped
    with _LOADING:
        if _shipped is None:
            _shipped = _load_shipped()
        return _shipped[0]


def ready(guard: PromptGuard) -> PromptGuard:
    """``guard`` with the shared classifier in place of ``"default"`` (so that no guard loads its own copy)."""
    if isinstance(guard.classifier, str):
        guard.classifier = default_classifier()
    return guard


def prompt_parameters(*, max_chars: int, threshold: float | None, rules_only: bool,
                      long_threshold: float | None = None) -> dict[str, Any]:
    """The prompt guard's parameters document (see the module docstring)."""
    parameters = {"guard": "prompt", "classifier": None if rules_only else "default", "threshold": threshold,
                  "max_chars": max_chars, "max_depth": PROMPT_MAX_DEPTH, "exhaustive": False}
    return parameters if long_threshold is None else {**parameters, "long_threshold": long_threshold}


def output_parameters(*, max_chars: int) -> dict[str, Any]:
    """The output guard's parameters document."""
    return {"guard": "output", "max_chars": max_chars}


def parameters_sha256(parameters: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of a guard's parameters (the records' ``policy_sha256``)."""
    return hashlib.sha256(canonical_json(parameters).encode("utf-8")).hexdigest()


def build_prompt_guard(parameters: dict[str, Any], classifier: Any = "default") -> PromptGuard:
    """The :class:`PromptGuard` a prompt parameters document describes. ``classifier`` is used when the document
    names one (default: bastion's own, loaded on first use); rules only when it names none."""
    return PromptGuard(classifier=None if parameters["classifier"] is None else classifier,
                       threshold=parameters["threshold"], long_threshold=parameters.get("long_threshold"),
                       max_chars=parameters["max_chars"],
                       max_depth=parameters["max_depth"], exhaustive=parameters["exhaustive"])


def classifier_sha256(guard: PromptGuard) -> str | None:
    """The SHA-256 of the file the guard's classifier came from: the shipped classifier's once :func:`ready` put
    it in place; ``None`` for rules only, a classifier not yet loaded, or one given in code."""
    shipped = _shipped
    return shipped[1] if shipped is not None and guard.classifier is shipped[0] else None


def request_bytes(body: BaseModel) -> np.ndarray:
    """``(B,)`` uint8: the UTF-8 bytes of the canonical JSON of ``body`` (defaults included)."""
    return np.frombuffer(canonical_json(body.model_dump(mode="json")).encode("utf-8"), dtype=np.uint8)


def parse_logged_request(kind: GuardKind, data: np.ndarray) -> GuardPromptRequest | GuardOutputRequest:
    """The request body a record's ``inputs`` hold (``InputError`` if they are not one)."""
    schema = GuardPromptRequest if kind == "prompt" else GuardOutputRequest
    try:
        return schema.model_validate(json.loads(data.astype(np.uint8).tobytes().decode("utf-8")))
    except ValidationError as error:
        raise InputError(f"the logged input is not a {kind} guard request: {validation_problems(error)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"the logged input is not a {kind} guard request: {error}") from None


def too_long(body: GuardPromptRequest | GuardOutputRequest, max_chars: int) -> str | None:
    """Why ``body`` is over the guard's limit of ``max_chars`` characters per text, or ``None``."""
    texts = [("text", body.text)]
    if isinstance(body, GuardOutputRequest) and body.system_prompt is not None:
        texts.append(("system_prompt", body.system_prompt))
    for field, text in texts:
        if len(text) > max_chars:
            return (f"{field} has {len(text):,} characters, over the guard's limit of {max_chars:,} "
                    "(BASTION_GUARD_MAX_CHARS): screen it in parts")
    return None


def verdict_json(verdict: Verdict, body: GuardPromptRequest | GuardOutputRequest) -> dict[str, Any]:
    """The verdict as the client gets it: ``redacted`` only when an output request asked for it."""
    document = verdict.model_dump(mode="json")
    if not (isinstance(body, GuardOutputRequest) and body.redact):
        document["redacted"] = None
    return document


def screen(guard: PromptGuard | None, body: GuardPromptRequest | GuardOutputRequest, parameters: dict[str, Any]
           ) -> Verdict:
    """Run the guard a request is for: ``guard`` for a prompt, :func:`screen_output` for a reply."""
    if isinstance(body, GuardOutputRequest):
        return screen_output(body.text, canaries=tuple(body.canaries or ()), system_prompt=body.system_prompt,
                             max_chars=parameters["max_chars"])
    if guard is None:
        raise ValueError("a prompt request needs a prompt guard")
    return guard.screen(body.text)


@dataclass(frozen=True)
class Rerun:
    """A logged guard call repeated: the response, scores and decision it gives now."""

    response: dict[str, Any]
    scores: dict[str, Any]
    decision: str


def rerun(kind: GuardKind, parameters: dict[str, Any], data: np.ndarray, *, model_sha256: str | None) -> Rerun:
    """Repeat a logged guard call: the guard its ``parameters`` describe on the request its ``data`` hold.

    Raises:
        InputError: the logged input is not a request, or the classifier now shipped is not the file the call
            was answered with (``model_sha256``).
    """
    body = parse_logged_request(kind, data)
    guard = None
    if kind == "prompt":
        guard = ready(build_prompt_guard(parameters))
        if classifier_sha256(guard) != model_sha256:
            raise InputError(f"the call was screened with classifier file {model_sha256}; this bastion ships "
                             f"{classifier_sha256(guard)}: replay it with the bastion version that answered it")
    verdict = screen(guard, body, parameters)
    return Rerun(response=verdict_json(verdict, body), scores={"score": verdict.score},
                 decision="flag" if verdict.flagged else "answer")


class TextGuards:
    """The gateway's two guards: their parameters and hashes, and the worker thread of the prompt guard.

    Args:
        max_chars: the longest text (and system prompt) screened, in characters.
        threshold: the classifier probability that flags a prompt; ``None``: the classifier's own.
        rules_only: screen prompts with the rules alone (no classifier is loaded).
        long_threshold: the probability that flags, instead, a prompt over 256 characters; ``None``:
            ``threshold`` (see :class:`~bastion.defenses.text.guard.PromptGuard`).
    """

    def __init__(self, *, max_chars: int, threshold: float | None = None, rules_only: bool = False,
                 long_threshold: float | None = None) -> None:
        self.max_chars = max_chars
        self.parameters: dict[GuardKind, dict[str, Any]] = {
            "prompt": prompt_parameters(max_chars=max_chars, threshold=threshold, rules_only=rules_only,
                                        long_threshold=long_threshold),
            "output": output_parameters(max_chars=max_chars)}
        self.sha256: dict[GuardKind, str] = {kind: parameters_sha256(p) for kind, p in self.parameters.items()}
        self._prompt_guard = build_prompt_guard(self.parameters["prompt"])
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-guard")

    def save_parameters(self, audit: AuditLog) -> None:
        """Keep both parameter documents in the policy table (once), where replay looks for them."""
        for kind, parameters in self.parameters.items():
            audit.save_policy(canonical_json(parameters), self.sha256[kind])

    async def screen(self, body: GuardPromptRequest | GuardOutputRequest) -> Verdict:
        """The verdict on ``body``, computed off the event loop (``InputError`` for a bad canary)."""
        if isinstance(body, GuardOutputRequest):
            return await asyncio.to_thread(screen, None, body, self.parameters["output"])
        return await self.run(self._screen_prompt, body.text)

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on the guard's worker thread: every prompt guard of the gateway (these routes' and
        a text model's) runs there, one call at a time, so the shared classifier is never used concurrently."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    def _screen_prompt(self, text: str) -> Verdict:
        return ready(self._prompt_guard).screen(text)

    def model_sha256(self, kind: GuardKind) -> str | None:
        """The classifier file's hash for prompt records once it is loaded; ``None`` otherwise."""
        return classifier_sha256(self._prompt_guard) if kind == "prompt" else None

    def record(self, kind: GuardKind, *, request_id: str, key: KeyInfo, body: BaseModel | None,
               response: dict[str, Any], verdict: Verdict | None, status: int = 200) -> PendingRecord:
        """The audit record of one call (``body`` and ``verdict`` ``None`` for a refused request)."""
        decision = "invalid" if verdict is None else ("flag" if verdict.flagged else "answer")
        return PendingRecord(
            request_id=request_id, key_id=key.id, model=GUARD_MODELS[kind], model_version=__version__,
            model_sha256=self.model_sha256(kind), policy_sha256=self.sha256[kind],
            inputs=None if body is None else request_bytes(body),
            scores={} if verdict is None else {"score": verdict.score}, probabilities=None,
            response=response, decision=decision, status=status)

    def close(self) -> None:
        """Stop the worker thread once the screen it runs (if any) ends."""
        self._worker.shutdown(wait=False)

