"""The ``bastion`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion import __version__
from bastion.cli.artifact import artifact_app
from bastion.cli.certify import certify_command
from bastion.cli.console import console
from bastion.cli.data import register_data_commands
from bastion.cli.gateway import audit_app, keys_app, replay_command, review_app
from bastion.cli.guard import guard_app
from bastion.cli.harden import harden_command
from bastion.cli.incident import incident_app
from bastion.cli.monitor import monitor_app
from bastion.cli.registry import registry_app
from bastion.cli.scan import scan_command
from bastion.cli.serve import serve_command
from bastion.cli.threat import threat_app
from bastion.cli.train import train_command

app = typer.Typer(
    name="bastion",
    help="Secure machine-learning models against adversarial attack: red-team a model with "
    "'bastion scan', make it robust with 'bastion harden', prove it with 'bastion certify', train one "
    "with 'bastion train', guard its training data with 'bastion data', serve it behind a hardened gateway with "
    "'bastion serve' (keys, review, replay, audit), screen text prompts and replies with 'bastion guard', list "
    "attacks with 'bastion attacks'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("scan")(scan_command)
app.command("train")(train_command)
app.command("harden")(harden_command)
app.command("certify")(certify_command)
app.add_typer(register_data_commands(), name="data")
app.add_typer(monitor_app, name="monitor")
app.command("serve")(serve_command)
app.command("replay")(replay_command)
app.add_typer(keys_app, name="keys")
app.add_typer(review_app, name="review")
app.add_typer(audit_app, name="audit")
app.add_typer(artifact_app, name="artifact")
app.add_typer(registry_app, name="registry")
app.add_typer(incident_app, name="incident")
app.add_typer(threat_app, name="threat")
app.add_typer(guard_app, name="guard")


@app.command("attacks")
def attacks_command() -> None:
    """List the registered evasion attacks and the suites that use them."""
    from rich.table import Table

    from bastion.attacks import ATTACKS
    from bastion.scan.suites import SUITES

    table = Table("attack", "access", "norms", "suites")
    for name in ATTACKS.names():
        attack = ATTACKS.create(name)
        suites = ", ".join(s for s, entries in SUITES.items() if any(e[0] == name for e in entries))
        table.add_row(name, attack.access, ", ".join(attack.norms), suites)
    console.print(table)


@app.command("version")
def version_command() -> None:
    """Print bastion's version."""
    console.print(__version__)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)

