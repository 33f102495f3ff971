"""``bastion data``: dataset manifests, signatures, versions with a ledger, audits and quarantine.

The sub-commands live in four modules, one per concern, each adding its commands to ``data_app``:
``cli/data_manifest.py`` (manifest, keygen, sign, verify, diff), ``cli/data_versions.py`` (commit, log,
checkout, release, rollback, ledger), ``cli/data_audit.py`` (audit, quarantine) and ``cli/data_poison.py``
(poison: a poisoned copy to red-team the pipeline with).
"""

from __future__ import annotations

import typer

data_app = typer.Typer(
    name="data",
    help="Guard the training data: tamper-evident manifests ('manifest', 'sign', 'verify', 'diff'), "
    "versions with a hash-chained ledger ('commit', 'log', 'checkout'), audits for duplicates, outliers, "
    "label issues and poison ('audit'), 'quarantine', and 'poison' to red-team a pipeline with a poisoned copy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register_data_commands() -> typer.Typer:
    """``data_app`` with every sub-command module imported (each registers its commands on import)."""
    import importlib

    for name in ("data_manifest", "data_versions", "data_audit", "data_poison"):
        importlib.import_module(f"bastion.cli.{name}")
    return data_app
