"""The gateway's settings, read from ``BASTION_*`` environment variables (or given in code).

A gateway outside development refuses to start with the default secret: the secret keys the hashes
of the API keys, so whoever knows it can test guessed keys offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The secret a development gateway runs with when none is set. Never accepted elsewhere.
DEVELOPMENT_SECRET = "development-only-secret-do-not-deploy"
MIN_SECRET_CHARS = 32

Environment = Literal["development", "test", "production"]


class GatewaySettings(BaseSettings):
    """How ``bastion serve`` runs. Every field can be set as ``BASTION_<FIELD>`` in the environment.

    Attributes:
        environment: ``development`` (default) accepts the default secret; ``test`` and
            ``production`` need ``BASTION_SECRET_KEY`` of at least 32 characters.
        secret_key: keys the HMAC-SHA256 of every API key; the same secret must be given to
            ``bastion keys`` and ``bastion serve``.
        home: bastion's state folder (SQLite database, ledger anchor), default ``.bastion``.
        database_url: a SQLAlchemy URL; default the SQLite file in ``home``.
        limits_url: where rate limits and budgets are counted: ``memory://`` (default, one process)
            or ``redis://host:port`` (shared by several gateways).
        global_rate: a limit on all requests together, a ``limits`` string such as ``"2000/second"``.
        default_rate, default_budget: apply to keys created without their own.
        max_body_bytes: larger request bodies are refused with 413 (default 4 MiB).
        model, weights, model_name, model_version: the model served (see ``bastion.models.load_classifier``).
        policy: the YAML policy file (default: the built-in policy, see ``bastion.gateway.policy``).
        audit_sync: flush every audit commit to the disk. Off (default), a committed record survives the
            gateway being killed at any moment but not the machine losing power; on, it survives both, at
            the cost of a disk flush per commit (commits are grouped under load).
        registry: ``NAME:ALIAS`` (e.g. ``fraud-cnn:production``): serve the registry version that alias
            points to, and follow it when a promote or rollback moves it (polled every
            ``registry_poll_seconds``, default 2). ``model``/``weights`` are then not needed. A version
            number (``fraud-cnn:1``) is refused: only a version promoted to an alias is served.
        batch_instances: the most instances evaluated in one forward pass when concurrent requests are
            batched (default 64); 1 evaluates every request alone. See ``bastion.gateway.batching``.
        batch_wait_ms: how long the first request of a forward pass waits for the others it expects (as many as
            are in flight, or as the largest of the last four passes held) to share it, in milliseconds (default 1;
            0 never waits; sequential traffic never waits). See ``bastion.gateway.batching``.
        guard_max_chars: the longest text (and system prompt) ``/v1/guard/prompt`` and ``/v1/guard/output``
            screen, in characters (default 1,048,576); longer is refused with 422. The body limit applies
            first: a text of ``guard_max_chars`` ASCII characters fits the default 4 MiB body, one of as
            many characters of 3 or 4 UTF-8 bytes (or JSON ``\\uXXXX`` escapes) gets 413.
        guard_threshold: the classifier probability that flags a prompt (default: the classifier's own).
        guard_long_threshold: the one that flags, instead, a prompt over 256 characters (default:
            ``guard_threshold``); higher flags fewer long benign prompts and lets an attacker pad a short
            injection past 256 characters (see ``bastion.defenses.text.guard.PromptGuard``).
        guard_rules_only: screen prompts with the rules alone, without loading the learned classifier.
        key_cache_seconds: how long a key lookup is cached; a revocation takes effect within this time
            on other processes (at once on the process that revokes).
    """

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    environment: Environment = "development"
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    home: Path = Path(".bastion")
    database_url: str | None = None
    limits_url: str = "memory://"
    global_rate: str | None = None
    default_rate: str | None = "600/minute"
    default_budget: str | None = "100000/day"
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    model: str | None = None
    weights: str | None = None
    model_name: str = "model"
    model_version: str = "1"
    policy: Path | None = None
    audit_sync: bool = False
    batch_instances: int = Field(64, ge=1)
    batch_wait_ms: float = Field(1.0, ge=0, le=100)
    registry: str | None = None
    registry_poll_seconds: float = Field(2.0, gt=0)
    key_cache_seconds: float = Field(2.0, ge=0)
    guard_max_chars: int = Field(1_048_576, ge=1)
    guard_threshold: float | None = Field(None, gt=0, lt=1)
    guard_long_threshold: float | None = Field(None, gt=0, lt=1)
    guard_rules_only: bool = False

    @field_validator("registry")
    @classmethod
    def _name_and_alias(cls, registry: str | None) -> str | None:
        """``NAME:ALIAS``, the alias not a version number: a gateway serves only a released version (see
        ``ModelRegistry.released``)."""
        from bastion.governance.registry import release_problem

        problem = None if registry is None else release_problem(registry)
        if problem is not None:
            raise ValueError(problem)
        return registry

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> GatewaySettings:
        secret = self.secret_key.get_secret_value()
        if self.environment == "development":
            return self
        if secret == DEVELOPMENT_SECRET:
            raise ValueError(f"BASTION_SECRET_KEY is the development default; a {self.environment} gateway needs "
                             f"its own secret of at least {MIN_SECRET_CHARS} characters (for example from "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"BASTION_SECRET_KEY has {len(secret)} characters; a {self.environment} gateway needs "
                             f"at least {MIN_SECRET_CHARS}")
        return self
