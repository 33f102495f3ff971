"""Rate limits and daily query budgets through the ``limits`` library (in memory, or Redis shared by gateways).

A key's rate counts requests in a moving window (exact: never more than the limit in any window);
its budget counts instances (the samples in a request) in a fixed window (a day's budget resets
at the window's end). The global rate counts every request, whoever sends it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bastion.core.errors import ConfigError
from bastion.gateway.keys import KeyInfo


@dataclass(frozen=True)
class Refusal:
    """Why a request was throttled: which limit, and how many seconds until it may succeed."""

    limit: str
    scope: str  # "key rate", "key budget", "global rate"
    retry_after: int


class Throttle:
    """Per-key and global limits.

    Args:
        url: a ``limits`` storage URL, ``memory://`` (default) or ``redis://host:port/db``.
        global_rate: limit on all requests together (``"2000/second"``), or ``None``.
        default_rate, default_budget: for keys without their own.
    """

    def __init__(self, url: str = "memory://", *, global_rate: str | None = None, default_rate: str | None = None,
                 default_budget: str | None = None) -> None:
        try:
            self._storage = LazyMemoryStorage() if url.strip() == "memory://" else storage_from_string(url)
        except Exception as error:  # the library raises several types for bad URLs and missing drivers
            raise ConfigError(f"cannot use {_without_password(url)!r} for rate limits: {error}; use memory:// or "
                              "redis://host:6379") from None
        self._url_shown = _without_password(url)
        self._moving = MovingWindowRateLimiter(self._storage)
        self._fixed = FixedWindowRateLimiter(self._storage)
        self._global = _parse(global_rate, "BASTION_GLOBAL_RATE")
        self._default_rate = _parse(default_rate, "BASTION_DEFAULT_RATE")
        self._default_budget = _parse(default_budget, "BASTION_DEFAULT_BUDGET")
        self._parsed: dict[str, RateLimitItem] = {}

    def check_reachable(self) -> None:
        """Raise ``ConfigError`` unless the limits' storage answers (a Redis server that is down, say)."""
        try:
            reachable = self._storage.check()
        except Exception:  # noqa: BLE001 - drivers raise their own connection errors
            reachable = False
        if not reachable:
            raise ConfigError(f"the rate-limit store {self._url_shown} does not answer: start it, or fix "
                              "BASTION_LIMITS_URL")

    def admit(self, key: KeyInfo, instances: int) -> Refusal | None:
        """Count one request of ``instances`` samples for ``key``; ``None`` if admitted, else why not.

        A refused request is not counted against the budget.
        """
        if self._global is not None and not self._moving.hit(self._global, "global"):
            return self._refusal(self._global, "global rate", self._moving, "global")
        rate = self._item(key.rate) or self._default_rate
        if rate is not None and not self._moving.hit(rate, "rate", key.id):
            return self._refusal(rate, "key rate", self._moving, "rate", key.id)
        budget = self._item(key.budget) or self._default_budget
        cost = max(instances, 1)
        # Test first: the library counts a refused hit, and a refused request must not spend the budget.
        # (Two gateways sharing Redis may both pass the test for the last units: a budget can overrun by
        # the requests in flight at that moment.)
        if budget is not None and not (self._fixed.test(budget, "budget", key.id, cost=cost)
                                       and self._fixed.hit(budget, "budget", key.id, cost=cost)):
            return self._refusal(budget, "key budget", self._fixed, "budget", key.id)
        return None

    def remaining_budget(self, key: KeyInfo) -> int | None:
        """Instances left in the key's current budget window (``None``: no budget)."""
        budget = self._item(key.budget) or self._default_budget
        if budget is None:
            return None
        return self._fixed.get_window_stats(budget, "budget", key.id).remaining

    def _item(self, text: str | None) -> RateLimitItem | None:
        if text is None:
            return None
        item = self._parsed.get(text)
        if item is None:
            item = self._parsed[text] = parse(text)
        return item

    @staticmethod
    def _refusal(item: RateLimitItem, scope: str, limiter, *identifiers: str) -> Refusal:
        reset = limiter.get_window_stats(item, *identifiers).reset_time
        return Refusal(limit=str(item), scope=scope, retry_after=max(1, int(reset - time.time()) + 1))


class LazyMemoryStorage(MemoryStorage):
    """``limits``' in-memory storage, sweeping expired entries inline at most once a second instead of starting
    a timer thread 10 ms after a hit: at a few hundred requests a second that was a thread start every few
    requests, 0.35 to 2.3 ms each in the gateway. Counts are unchanged: every strategy checks expiry itself
    when it reads; the sweep only bounds memory."""

    STORAGE_SCHEME = ["bastion+memory"]  # its own scheme: the library's ``memory://`` stays its own class
    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._swept = time.monotonic()

    def _MemoryStorage__schedule_expiry(self) -> None:  # the library's private hook, name-mangled
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_SECONDS:
            self._swept = now
            self._MemoryStorage__expire_events()


def _parse(text: str | None, name: str) -> RateLimitItem | None:
    if text is None or not text.strip():
        return None
    try:
        return parse(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a limit; write COUNT/PERIOD, e.g. 100/minute") from None


def _without_password(url: str) -> str:
    """``url`` with any password masked, for messages."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
