"""Serving what a registry alias points to: a gateway started with ``--registry fraud-cnn:production``
checks the alias every ``registry_poll_seconds`` and, when a promote or a rollback moved it, loads that
version (its artifacts' hashes checked), fits the same policy to it and switches to it between requests,
without a restart. A request already past validation finishes on the model it started with (its audit
record names that version); a version that fails to load is logged and the gateway keeps serving the
one it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bastion.gateway.state import GatewayState, serve_model

logger = logging.getLogger(__name__)


class RegistryFollower:
    """Keeps ``state.served`` on the version ``name:alias`` points to.

    Args:
        state: the running gateway (its database holds the registry).
        ref: ``NAME:ALIAS``, e.g. ``fraud-cnn:production``.
        poll_seconds: how often the alias is read (default 2.0).
    """

    def __init__(self, state: GatewayState, ref: str, *, poll_seconds: float = 2.0) -> None:
        from bastion.governance.registry import ModelRegistry

        self.state = state
        self.name, _, self.alias = ref.partition(":")
        self.poll_seconds = poll_seconds
        self.registry = ModelRegistry(state.database)  # shares the gateway's database; never closed here
        self._failed: int | None = None  # a version that would not load, not retried until the alias moves
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> bool:
        """Read the alias once and switch if it moved; whether the served version changed."""
        from bastion.governance.registry import alias_target

        with self.state.database.sessions() as session:
            number = alias_target(session, self.name, self.alias)
        if number is None or str(number) == self.state.served.version or number == self._failed:
            return False
        try:
            served = await asyncio.to_thread(self._load, number)
        except Exception as error:  # noqa: BLE001 - a bad version must not take the gateway down
            self._failed = number
            logger.error("registry version failed to load; still serving the previous one",
                         extra={"event": "model_switch_failed", "model": self.name, "version": number,
                                "serving": self.state.served.version, "error": str(error)})
            return False
        previous = self.state.served.version
        self.state.served = served
        self.state.audit.save_policy(served.pipeline.policy.document(), served.policy_sha256)
        logger.warning("serving another model version", extra={"event": "model_switched", "model": self.name,
                                                                "alias": self.alias, "from": previous,
                                                                "to": served.version, "sha256": served.sha256})
        return True

    def _load(self, number: int):
        from bastion.core.errors import InputError

        loaded, info = self.registry.load(f"{self.name}:{number}")
        if info.status != "approved":  # promote moves an alias only to an approved version; never serve another
            raise InputError(f"{info.ref} is {info.status}, not approved; it is not served")
        return serve_model(loaded, self.state.served.pipeline.policy, name=self.state.served.name,
                           version=str(info.number))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - keep following after a database hiccup
                logger.exception("reading the registry alias %s:%s failed", self.name, self.alias)
