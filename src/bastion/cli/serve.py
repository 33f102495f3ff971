"""``bastion serve``: the hardened inference gateway on uvicorn."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import errors, user_errors

if TYPE_CHECKING:  # the gateway (FastAPI, torch) is imported when the command runs
    from bastion.gateway.policy import Policy
    from bastion.gateway.settings import GatewaySettings


def serve_command(
    model: Annotated[str | None, typer.Option(help="The model: pkg.module:factory (with --weights), a model "
                                                   "file (.pt/.pth/.ts TorchScript, .onnx, .skops) or an "
                                                   "ensemble manifest (.yaml).")] = None,
    registry: Annotated[str | None, typer.Option(help="Serve the registry version NAME:ALIAS points to (e.g. "
                                                      "fraud-cnn:production) and follow promotes and rollbacks "
                                                      "without a restart; instead of --model. Only a promoted "
                                                      "version is served: not a version number.")] = None,
    weights: Annotated[str | None, typer.Option(help="safetensors weights for a factory model.")] = None,
    policy: Annotated[Path | None, typer.Option(help="YAML policy (input rules, detectors, decisions, output); "
                                                     "default: built-in, no detectors.")] = None,
    name: Annotated[str, typer.Option(help="Name the model is served under (/v2/models/NAME).")] = "model",
    version: Annotated[str, typer.Option(help="Version string reported and logged.")] = "1",
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    home: Annotated[Path | None, typer.Option(help="bastion's state folder (default $BASTION_HOME or "
                                                   ".bastion): SQLite database, audit anchor.")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads for inference (1 is fastest for one request "
                                              "at a time, and what replay uses).")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes answering on the port (uvicorn workers), "
                                                     "each with its own copy of the model. Several workers count "
                                                     "keys' rates and budgets together only through a shared store, "
                                                     "so --workers above 1 needs BASTION_LIMITS_URL=redis://...; "
                                                     "the database may be PostgreSQL (BASTION_DATABASE_URL, "
                                                     "needed for several hosts) or the SQLite file in --home "
                                                     "(one host: its writers take turns, and the audit writer "
                                                     "re-reads the chain's head when another appended first), "
                                                     "never an in-memory one.")] = 1,
) -> None:
    """Serve a model behind API keys, limits, the input policy, human review, output hardening, the extraction
    monitor and the audit log. Settings not given here come from BASTION_* variables (BASTION_SECRET_KEY,
    BASTION_ENVIRONMENT, BASTION_DATABASE_URL, BASTION_LIMITS_URL, BASTION_GLOBAL_RATE, ...).

    Several gateways (--workers N on one host, or gateways on several hosts) share keys, limits, budgets, the
    review queue and the audit chain when they are given the same BASTION_DATABASE_URL (PostgreSQL:
    postgresql+psycopg://...) and BASTION_LIMITS_URL (redis://...)."""
    import torch
    import uvicorn

    from bastion.cli.model_options import warn_if_untrained
    from bastion.core.errors import InputError
    from bastion.gateway.app import WORKER_OPTIONS_ENV, create_app
    from bastion.gateway.logs import configure_json_logs
    from bastion.gateway.policy import load_policy
    from bastion.gateway.settings import GatewaySettings
    from bastion.gateway.state import check_policy, load_registry_version
    from bastion.models.loading import load_classifier

    with user_errors():
        if registry is not None:
            from bastion.governance.registry import release_problem

            problem = release_problem(registry)  # named --registry here (the settings would say BASTION_REGISTRY)
            if problem is not None:
                raise InputError(f"--registry: {problem}")
        overrides = {"model": model, "weights": weights, "policy": policy, "model_name": name,
                     "model_version": version, "registry": registry}
        if home is not None:
            overrides["home"] = home
        settings = GatewaySettings(**overrides)
        if workers > 1:
            check_shared_storage(settings, workers)
        from bastion.gateway.throttle import Throttle

        # A limit that does not parse, or a Redis that is down: say so now, not in uvicorn's start-up traceback.
        Throttle(settings.limits_url, global_rate=settings.global_rate, default_rate=settings.default_rate,
                 default_budget=settings.default_budget).check_reachable()
        torch.set_num_threads(threads)
        # Load and check everything a user can get wrong here, so that a mistake is a one-line error rather
        # than uvicorn's "Application startup failed".
        if (model is None) == (registry is None):
            raise InputError("pass either --model (with --weights for a factory) or --registry NAME:ALIAS")
        if registry is not None:
            loaded, name, version = load_registry_version(settings)
            settings = settings.model_copy(update={"model_name": name, "model_version": version})
        else:
            loaded = load_classifier(model, weights=weights)
            warn_if_untrained(model, weights)
        rules = load_policy(policy)
        shape = getattr(loaded.classifier, "input_shape", None)  # None: a text model (strings in)
        check_policy(rules, None if shape is None else tuple(shape), classifier=loaded.classifier)
        if workers > 1:
            # Every worker rebuilds these settings (see app_from_environment) and loads the model itself. The
            # schema and the policy rows are written here, once, so that the workers do not race to create them.
            del loaded
            prepare_shared_database(settings, rules)
            options = {key: str(value) if isinstance(value, Path) else value for key, value in overrides.items()}
            os.environ[WORKER_OPTIONS_ENV] = json.dumps({**options, "threads": threads})
        else:
            check_database(settings)
            configure_json_logs()
            app = create_app(settings, loaded=loaded, policy=rules)
        check_port_free(host, port)  # last: the checks above say more about what the user wrote
    errors.print(f"bastion gateway: serving {name} version {version} on http://{host}:{port} "
                 f"(OpenAPI at /docs, console at /console)"
                 + (f" with {workers} worker processes" if workers > 1 else ""))
    if workers > 1:
        uvicorn.run("bastion.gateway.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                    access_log=False, log_level="warning")
    else:
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on (``InputError``), before the model is served."""
    import socket

    from bastion.core.errors import InputError

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise InputError(f"--host {host}: cannot resolve it ({error.strerror}); use an address such as 127.0.0.1"
                         ) from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no bar
        try:
            probe.bind(address)
        except OSError as error:
            raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}; stop what uses it, or "
                             "choose another port with --port") from None


def check_database(settings: GatewaySettings) -> None:
    """Open the gateway's database once (creating or upgrading its schema), so that a bad URL, a missing driver or
    a server that does not answer is a one-line error rather than a traceback from uvicorn's start-up."""
    from sqlalchemy.exc import SQLAlchemyError

    from bastion.core.errors import ConfigError
    from bastion.storage.database import open_database

    try:
        with open_database(settings.database_url, home=settings.home, sync_every_commit=settings.audit_sync):
            pass
    except SQLAlchemyError as error:
        shown = "the SQLite file in --home" if settings.database_url is None else "BASTION_DATABASE_URL"
        raise ConfigError(f"cannot open the gateway's database ({shown}): {getattr(error, 'orig', None) or error}"
                          ) from None


def check_shared_storage(settings: GatewaySettings, workers: int) -> None:
    """Refuse ``workers`` processes on storage each would count alone: in-memory limits or database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from bastion.core.errors import ConfigError
    from bastion.storage.database import database_url

    if settings.limits_url.strip().startswith("memory://"):
        raise ConfigError(f"--workers {workers} needs rate limits and budgets shared by the workers, but "
                          f"BASTION_LIMITS_URL is {settings.limits_url!r} (each worker would count alone and a key "
                          f"would get {workers} times its limit): set BASTION_LIMITS_URL=redis://host:6379/0, or "
                          "serve with --workers 1")
    url = settings.database_url or database_url(settings.home)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # opening it says what is wrong
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"--workers {workers} needs a database shared by the workers, but BASTION_DATABASE_URL is "
                          f"{url!r}, an in-memory SQLite database private to each process: set "
                          "BASTION_DATABASE_URL=postgresql+psycopg://user@host/bastion (or leave it unset for the "
                          "SQLite file in --home), or serve with --workers 1")


def prepare_shared_database(settings: GatewaySettings, policy: Policy) -> None:
    """Create or upgrade the schema and store the policy documents once, before the workers start."""
    from bastion.gateway.audit import AuditLog
    from bastion.gateway.guard import TextGuards
    from bastion.storage.database import open_database

    with open_database(settings.database_url, home=settings.home, sync_every_commit=settings.audit_sync) as database:
        audit = AuditLog(database, sync=settings.audit_sync)
        audit.save_policy(policy.document(), policy.sha256())
        guards = TextGuards(max_chars=settings.guard_max_chars, threshold=settings.guard_threshold,
                            long_threshold=settings.guard_long_threshold, rules_only=settings.guard_rules_only)
        try:
            guards.save_parameters(audit)
        finally:
            guards.close()

