"""The reviewers' web console: server-rendered pages (Jinja2, autoescaped, no JavaScript) under ``/console``.

A reviewer or admin logs in with their API key, which the console keeps in an HttpOnly, SameSite=Strict
cookie (``bastion_key``, read by :func:`bastion.gateway.deps.bearer_key`). Pages: the review queue, a case
(its input drawn as an image when it is one, the detectors' scores, the model's probabilities, the decision
form), and the drift of the served model's logged traffic. Decisions go through the same service as the
JSON API (:func:`bastion.gateway.routes.reviews.decide_case`).

Every form carries a token, ``HMAC(secret, key id + form purpose)``, checked on POST (403 otherwise), on top
of the SameSite cookie. Pages without a session redirect (303) to ``/console/login``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment
from pydantic import ValidationError
from sqlalchemy import func, select

from bastion.core.errors import InputError
from bastion.gateway.deps import Reviewer, State
from bastion.gateway.errors import GatewayError, forbidden, invalid_input, not_found
from bastion.gateway.keys import KeyInfo
from bastion.gateway.replay import logged_input
from bastion.gateway.review import REVIEW_ACTIONS, get_case, list_cases
from bastion.gateway.routes.reviews import decide_case
from bastion.gateway.schemas import ReviewDecision
from bastion.gateway.state import GatewayState
from bastion.gateway.text_pipeline import TextPipeline, texts_from_array
from bastion.monitor.drift import DriftThresholds, drift_report
from bastion.monitor.report import class_plot, confidence_plot, feature_plot
from bastion.monitor.traffic import count_records, split_windows
from bastion.scan.report.html import report_environment
from bastion.scan.report.plots import png_data_uri
from bastion.storage.tables import AuditRecordRow

COOKIE = "bastion_key"
SESSION_SECONDS = 8 * 3600
CONSOLE_ROLES = ("reviewer", "admin")
STATUS_FILTERS = ("pending", "answered", "refused", "all")
QUEUE_LIMIT = 200
#: An image input is scaled up (nearest neighbour) to about this many pixels on its longer side.
IMAGE_PIXELS = 160
#: Values listed for an input that is not an image.
MAX_VALUES = 256
#: Logged requests in each drift window at most (the oldest and the newest), so the page stays cheap.
DRIFT_RECORDS = 500
DRIFT_THRESHOLDS = DriftThresholds(max_points=300)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ConsoleRoute(APIRoute):
    """Answers a console route's errors as HTML: no session (401) redirects to the login page, other
    errors show a page with the message. Every answer gets the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except GatewayError as error:
                if error.status == 401:
                    response = RedirectResponse("/console/login", status_code=303)
                else:
                    response = error_page(request, error.status, error.detail)
            except RequestValidationError as error:
                problems = [f"{e['loc'][-1]}: {e['msg']}" for e in error.errors()]
                response = error_page(request, 422, "; ".join(problems))
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return report_environment("bastion.gateway")


def csrf_token(state: GatewayState, key_id: str, purpose: str) -> str:
    """The token a console form of ``purpose`` carries for key ``key_id``."""
    secret = state.settings.secret_key.get_secret_value().encode("utf-8")
    return hmac.new(secret, f"console-form:{key_id}:{purpose}".encode(), hashlib.sha256).hexdigest()


def check_csrf(state: GatewayState, key: KeyInfo, purpose: str, token: str) -> None:
    """403 unless ``token`` is the one this key's form of ``purpose`` carries."""
    if not hmac.compare_digest(token.encode(), csrf_token(state, key.id, purpose).encode()):
        raise forbidden("the form's security token does not match this session: reload the page and submit again")


def render(request: Request, template: str, *, status: int = 200, viewer: KeyInfo | None = None,
           **context: Any) -> HTMLResponse:
    """A console page; with ``viewer`` the header names them and offers to log out."""
    state: GatewayState = request.app.state.gateway
    logout = csrf_token(state, viewer.id, "logout") if viewer is not None else None
    html = _environment().get_template(template).render(viewer=viewer, logout_token=logout,
                                                        model=state.served.name, **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page that says what went wrong."""
    titles = {403: "Not allowed", 404: "Not found", 422: "That cannot be done"}
    return render(request, "error.html", status=status, title=titles.get(status, "Error"), message=message)


# --- login --------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", error=None)


@router.post("/login")
def login(request: Request, state: State, key: Annotated[str, Form(max_length=200)]) -> Response:
    """Check the key (reviewer or admin) and keep it in the session cookie."""
    info = state.keys.lookup(key.strip())
    problem, status = None, 401
    if info is None:
        problem = "that API key is not valid"
    elif info.revoked:
        problem = f"the API key {info.id} was revoked"
    elif info.expired():
        problem = f"the API key {info.id} has expired"
    elif info.role not in CONSOLE_ROLES:
        problem, status = (f"the console is for reviewer and admin keys; key {info.id} ({info.name}) is a "
                           f"{info.role} key. Ask an admin for a reviewer key."), 403
    if problem is not None:
        return render(request, "login.html", status=status, error=problem)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, key.strip(), max_age=SESSION_SECONDS, path="/console", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(state: State, viewer: Reviewer, csrf: Annotated[str, Form(max_length=128)]) -> Response:
    """End the session."""
    check_csrf(state, viewer, "logout", csrf)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# --- the queue and a case -----------------------------------------------------------------------------------


@router.get("")
def queue(request: Request, state: State, viewer: Reviewer, status: str = "pending") -> HTMLResponse:
    """The review cases with ``status`` (pending by default, or answered, refused, all), oldest first."""
    if status not in STATUS_FILTERS:
        raise invalid_input(f"unknown status {status!r}; choose one of {', '.join(STATUS_FILTERS)}")
    with state.database.sessions() as session:
        cases = list_cases(session, status=status, limit=QUEUE_LIMIT)
    return render(request, "queue.html", viewer=viewer, cases=cases, shown=status, statuses=STATUS_FILTERS,
                  limit=QUEUE_LIMIT)


@dataclass(frozen=True)
class InstanceView:
    """One instance of a case's request, as the case page shows it."""

    index: int
    shape: list[int]
    image: str | None
    values: list[tuple[int, float]]
    value_count: int
    scores: list[tuple[str, float]]
    probabilities: list[tuple[int, float]]
    predicted: int
    text: str | None = None  # a text model's instance


def input_image(sample: np.ndarray, *, low: float, high: float) -> str | None:
    """A PNG data URI of ``sample`` when it is image-shaped (``(C, H, W)`` with C in 1 or 3, or ``(H, W)``),
    values mapped from ``[low, high]`` to black..white and scaled up; else ``None``."""
    from PIL import Image

    if sample.ndim == 2:
        sample = sample[None]
    if sample.ndim != 3 or sample.shape[0] not in (1, 3) or min(sample.shape[1:]) < 2:
        return None
    values = sample.astype(np.float64)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        low, high = float(values.min()), float(values.max())
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    pixels = np.round(scaled * 255).astype(np.uint8).transpose(1, 2, 0)
    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    factor = max(1, IMAGE_PIXELS // max(height, width))
    image = image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return png_data_uri(buffer.getvalue())


def _instances(state: GatewayState, record: AuditRecordRow, inputs: np.ndarray) -> list[InstanceView]:
    pipeline = state.served.pipeline
    if isinstance(pipeline, TextPipeline):
        return _text_instances(record, texts_from_array(inputs))
    views = []
    for index, sample in enumerate(inputs):
        probabilities = [float(p) for p in (record.probabilities or [])[index]] if record.probabilities else []
        image = input_image(sample, low=float(pipeline.low), high=float(pipeline.high))
        flat = sample.reshape(-1)
        values = [] if image is not None else [(i, float(v)) for i, v in enumerate(flat[:MAX_VALUES])]
        scores = [(name, float(per_instance[index])) for name, per_instance in sorted((record.scores or {}).items())
                  if index < len(per_instance)]
        views.append(InstanceView(index=index, shape=list(sample.shape), image=image, values=values,
                                  value_count=int(flat.size), scores=scores,
                                  probabilities=list(enumerate(probabilities)),
                                  predicted=int(np.argmax(probabilities)) if probabilities else -1))
    return views


def _text_instances(record: AuditRecordRow, texts: list[str]) -> list[InstanceView]:
    """A text model's instances: the strings as sent, with their scores and probabilities."""
    views = []
    for index, text in enumerate(texts):
        probabilities = [float(p) for p in (record.probabilities or [])[index]] if record.probabilities else []
        scores = [(name, float(per_instance[index])) for name, per_instance in sorted((record.scores or {}).items())
                  if index < len(per_instance)]
        views.append(InstanceView(index=index, shape=[len(text)], image=None, values=[], value_count=0,
                                  scores=scores, probabilities=list(enumerate(probabilities)),
                                  predicted=int(np.argmax(probabilities)) if probabilities else -1, text=text))
    return views


def _case_page(request: Request, state: GatewayState, viewer: KeyInfo, review_id: str, *, status: int = 200,
               error: str | None = None, form: dict[str, Any] | None = None) -> HTMLResponse:
    with state.database.sessions() as session:
        found = get_case(session, review_id)
        if found is None:
            raise not_found(f"no review case {review_id!r}")
        case, record = found
        try:
            inputs = logged_input(session, record)
        except InputError as problem:
            raise not_found(str(problem)) from None
    return render(request, "case.html", status=status, viewer=viewer, case=case, record=record,
                  client_id=(record.response or {}).get("id"), instances=_instances(state, record, inputs),
                  classes=list(range(state.served.num_classes)), actions=REVIEW_ACTIONS, error=error,
                  form=form or {"action": "", "labels": [], "note": ""},
                  csrf=csrf_token(state, viewer.id, f"decide:{case.id}"))


@router.get("/reviews/{review_id}")
def case_page(request: Request, review_id: str, state: State, viewer: Reviewer) -> HTMLResponse:
    """One case: the input, the detectors' scores, the model's probabilities, the decision (or its form)."""
    return _case_page(request, state, viewer, review_id)


def form_decision(action: str, labels: list[str], note: str) -> ReviewDecision:
    """The decision a console form describes: labels count only for ``relabel``.

    Raises:
        InputError: an unknown action, a missing or non-numeric label for ``relabel``, a note too long.
    """
    if action not in REVIEW_ACTIONS:
        raise InputError("choose what to do with the case: approve, refuse or relabel")
    chosen = None
    if action == "relabel":
        if not labels or any(not label.strip().isdigit() for label in labels):
            raise InputError("relabel needs a class for every instance: choose one in each instance's list")
        chosen = [int(label) for label in labels]
    try:
        return ReviewDecision(action=action, labels=chosen, note=note.strip() or None)
    except ValidationError as error:
        raise InputError("; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in error.errors())) from None


@router.post("/reviews/{review_id}/decision")
def decision(request: Request, review_id: str, state: State, viewer: Reviewer,
             csrf: Annotated[str, Form(max_length=128)], action: Annotated[str, Form(max_length=20)] = "",
             labels: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
             note: Annotated[str, Form(max_length=4000)] = "") -> Response:
    """Record the reviewer's decision, then show the case (303); a decision that is not allowed shows the
    case again with the reason (422)."""
    check_csrf(state, viewer, f"decide:{review_id}", csrf)
    try:
        decided = decide_case(state, review_id, form_decision(action, labels, note),
                              reviewer=f"{viewer.name} ({viewer.id})")
    except (InputError, GatewayError) as error:
        if isinstance(error, GatewayError) and error.status == 404:
            raise
        message = error.detail if isinstance(error, GatewayError) else str(error)
        return _case_page(request, state, viewer, review_id, status=422, error=message,
                          form={"action": action, "labels": labels, "note": note})
    return RedirectResponse(f"/console/reviews/{decided.review_id}", status_code=303)


# --- drift --------------------------------------------------------------------------------------------------


@router.get("/monitor")
def monitor(request: Request, state: State, viewer: Reviewer) -> HTMLResponse:
    """Drift of the served model's logged traffic: the older half against the newer half of the audit log
    (at most ``DRIFT_RECORDS`` requests each), and the keys throttled after extraction alerts."""
    return render(request, "monitor.html", viewer=viewer, throttled=sorted(state.throttled_keys),
                  most_records=DRIFT_RECORDS, **drift_view(request, state))


def drift_view(request: Request, state: GatewayState) -> dict[str, Any]:
    """``problem`` (why there is no report yet) or ``report`` and its ``plots``; cached until the log grows."""
    model = state.served.name
    with state.database.sessions() as session:
        total = count_records(session, model=model)
        last = session.scalar(select(func.max(AuditRecordRow.seq)))
        cached = getattr(request.app.state, "console_drift", None)
        if cached is not None and cached[0] == (model, total, last):
            return cached[1]
        half = min(total // 2, DRIFT_RECORDS) or None
        try:
            reference, current = split_windows(session, model=model, reference_first=half, current_last=half)
        except InputError as error:
            return {"problem": str(error), "report": None, "plots": []}
    try:
        report = drift_report(reference, current, thresholds=DRIFT_THRESHOLDS)
    except InputError as error:
        return {"problem": str(error), "report": None, "plots": []}
    view = {"problem": None, "report": report, "plots": [
        ("Confidence (largest class probability) of each window.", png_data_uri(confidence_plot(reference, current))),
        ("Share of predictions per class.", png_data_uri(class_plot(report))),
        ("How far each input feature's distribution moved (KS distance).", png_data_uri(feature_plot(report)))]}
    request.app.state.console_drift = ((model, total, last), view)
    return view
