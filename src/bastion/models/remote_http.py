"""HTTP for the remote classifier: JSON requests with retries, backoff, ``Retry-After`` and an API key kept secret.

Connection errors, timeouts, HTTP 408, 429 and 5xx (except 501 and 505) are retried by a
:class:`RetryPolicy`; any other refusal, or an answer that is not JSON, fails at once with a
:class:`~bastion.core.errors.RemoteError` naming the URL (never the key), the status and the start of
the answer. The key is sent in a header and replaced by ``<redacted>`` wherever text could echo it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bastion.core.errors import InputError, RemoteError
from bastion.models.remote_protocol import excerpt

#: What stands in reports and messages where a secret would be.
REDACTED = "<redacted>"

_logger = logging.getLogger(__name__)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NEVER_RETRIED = frozenset({501, 505})  # "not implemented" and "version not supported" do not change


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: connection errors, timeouts, HTTP 408, 429 and 5xx (not 501, 505).

    Retry ``k`` (from 0) waits ``min(backoff_max, backoff_base * 2**k)`` seconds times a jitter factor in
    ``[0.5, 1)`` drawn from a generator seeded with ``seed``. A 429 or 503 with a ``Retry-After`` header
    (seconds or an HTTP date) waits that long instead, at most ``retry_after_max`` seconds.

    Attributes:
        max_retries: retries after the first attempt (5); then the request fails with :class:`RemoteError`.
        backoff_base, backoff_max, retry_after_max: seconds (0.5, 30, 60).
        seed: seeds the jitter (0).
        sleep: how to wait, ``time.sleep`` by default.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    seed: int = 0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InputError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("backoff_base", "backoff_max", "retry_after_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise InputError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    def params(self) -> dict[str, Any]:
        """The policy for the evidence record."""
        return {"max_retries": self.max_retries, "backoff_base": self.backoff_base,
                "backoff_max": self.backoff_max, "retry_after_max": self.retry_after_max, "seed": self.seed}

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry ``retry`` (from 0)."""
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(retry, 60)) * rng.uniform(0.5, 1.0)

    def retry_after(self, header: str | None) -> float | None:
        """Seconds a ``Retry-After`` header asks for, at most ``retry_after_max``; ``None`` if absent or unreadable."""
        if header is None:
            return None
        try:
            seconds = float(header.strip())
        except ValueError:
            try:
                when = parsedate_to_datetime(header.strip())
            except (TypeError, ValueError):
                return None
            when = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return min(max(seconds, 0.0), self.retry_after_max) if math.isfinite(seconds) else None


class EndpointSession:
    """Sends JSON requests to an endpoint and returns its JSON answers, retrying by ``retry``.

    Args:
        api_key: sent as ``Authorization: Bearer KEY``, or as the value of ``auth_header`` when that is
            another header (e.g. ``X-API-Key``); ``None`` sends no credentials.
        auth_header: the header carrying the key (``"Authorization"``).
        timeout, connect_timeout: seconds to wait for an answer and for a connection.
        retry: the :class:`RetryPolicy`.
        client: an ``httpx.Client`` to send with; default: a new one, closed by :meth:`close`.

    Attributes:
        requests_sent: HTTP requests made, retries included.
    """

    def __init__(self, *, api_key: str | None, auth_header: str, timeout: float, connect_timeout: float,
                 retry: RetryPolicy, client: httpx.Client | None) -> None:
        for value, name in ((timeout, "timeout"), (connect_timeout, "connect_timeout")):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise InputError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)
        self.retry = retry
        self.auth_header = auth_header
        self.has_key = bool(api_key)
        self._api_key = api_key or None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         **_auth_headers(self._api_key, auth_header)}
        self._owns_client = client is None
        self._client = httpx.Client(follow_redirects=False) if client is None else client
        self._rng = random.Random(retry.seed)
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"EndpointSession(auth_header={self.auth_header!r}, api_key={REDACTED if self.has_key else None!r})"

    def close(self) -> None:
        """Close the connections (not those of a ``client`` passed in)."""
        if self._owns_client:
            self._client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``<redacted>``."""
        return text.replace(self._api_key, REDACTED) if self._api_key else text

    def request(self, method: str, url: str, payload: dict[str, Any] | None = None) -> Any:
        """The JSON answer to ``method url`` (with ``payload`` as a JSON body), retried by the policy.

        Raises:
            RemoteError: a refusal that retrying cannot fix (401, 404, 413, ...), an answer that is not
                JSON, or a failure still there after ``max_retries`` retries.
        """
        content = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        attempts = self.retry.max_retries + 1
        for attempt in range(attempts):
            self.requests_sent += 1
            status: int | None = None
            wait: float | None = None
            try:
                response = self._client.request(method, url, content=content, headers=self._headers, timeout=timeout)
            except httpx.TimeoutException as exc:
                failure = (f"no answer in time ({type(exc).__name__}; connect timeout {self.connect_timeout} s, "
                           f"read timeout {self.timeout} s)")
            except httpx.TransportError as exc:
                failure = f"connection failed ({type(exc).__name__}: {self.redact(str(exc))})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._json(response, url)
                failure = f"HTTP {status}: {excerpt(response.text, self._api_key)}"
                if not _retried(status):
                    raise RemoteError(f"{method} {url} was refused with {failure}. {self._advice(status)}",
                                      url=url, status=status)
                if status in (429, 503):
                    wait = self.retry.retry_after(response.headers.get("Retry-After"))
            if attempt + 1 < attempts:
                wait = self.retry.backoff(attempt, self._rng) if wait is None else wait
                _logger.warning("%s %s: %s; retry %d of %d in %.3g s", method, url, failure, attempt + 1,
                                self.retry.max_retries, wait)
                self.retry.sleep(wait)
        raise RemoteError(f"{method} {url} failed after {attempts} attempts; last: {failure}", url=url, status=status)

    def _json(self, response: httpx.Response, url: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise RemoteError(f"{url} answered HTTP {response.status_code} with a body that is not JSON: "
                              f"{excerpt(response.text, self._api_key)!r}", url=url,
                              status=response.status_code) from None

    def _advice(self, status: int) -> str:
        if status in (401, 403):
            if self._api_key is None:
                return "The endpoint wants credentials: pass api_key (or set BASTION_API_KEY)"
            return f"The endpoint refused the API key sent in the {self.auth_header} header: check it and auth_header"
        if status == 404:
            return "Nothing is served there: check the URL and the model name"
        if status == 413:
            return "The request is too large: lower batch_size"
        if 300 <= status < 400:
            return "Redirects are not followed: pass the URL the endpoint redirects to"
        return "Check the input shape, datatype and names the endpoint expects"


def _auth_headers(api_key: str | None, header: str) -> dict[str, str]:
    if not isinstance(header, str) or not _HEADER_NAME.match(header):
        raise InputError(f"auth_header must be an HTTP header name such as Authorization or X-API-Key, got {header!r}")
    if api_key is None:
        return {}
    if not isinstance(api_key, str) or any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        raise InputError("api_key must be a string without control characters")  # never echo the key
    return {header: f"Bearer {api_key}" if header.lower() == "authorization" else api_key}


def _retried(status: int) -> bool:
    return status in (408, 429) or (500 <= status < 600 and status not in _NEVER_RETRIED)
