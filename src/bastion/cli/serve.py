"""``bastion serve``: the hardened inference gateway on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.console import errors, user_errors


def serve_command(
    model: Annotated[str | None, typer.Option(help="The model: pkg.module:factory (with --weights), or a model "
                                                   "file (.pt2/.ts TorchScript, .onnx, .skops).")] = None,
    registry: Annotated[str | None, typer.Option(help="Serve the registry version NAME:ALIAS points to (e.g. "
                                                      "fraud-cnn:production) and follow promotes and rollbacks "
                                                      "without a restart; instead of --model.")] = None,
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
) -> None:
    """Serve a model behind API keys, limits, the input policy, human review, output hardening, the extraction
    monitor and the audit log. Settings not given here come from BASTION_* variables (BASTION_SECRET_KEY,
    BASTION_ENVIRONMENT, BASTION_DATABASE_URL, BASTION_LIMITS_URL, BASTION_GLOBAL_RATE, ...)."""
    import torch
    import uvicorn

    from bastion.core.errors import InputError
    from bastion.gateway.app import create_app
    from bastion.gateway.logs import configure_json_logs
    from bastion.gateway.policy import load_policy
    from bastion.gateway.settings import GatewaySettings
    from bastion.gateway.state import check_policy, load_registry_version
    from bastion.models.loading import load_classifier

    with user_errors():
        overrides = {"model": model, "weights": weights, "policy": policy, "model_name": name,
                     "model_version": version, "registry": registry}
        if home is not None:
            overrides["home"] = home
        settings = GatewaySettings(**overrides)
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
        rules = load_policy(policy)
        shape = getattr(loaded.classifier, "input_shape", None)  # None: a text model (strings in)
        check_policy(rules, None if shape is None else tuple(shape))
        configure_json_logs()
        app = create_app(settings, loaded=loaded, policy=rules)
    errors.print(f"bastion gateway: serving {name} version {version} on http://{host}:{port} "
                 f"(OpenAPI at /docs, console at /console)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")

