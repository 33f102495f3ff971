"""``bastion threat``: write a threat-model document, validate it, and check its release gates against evidence.

``init`` prints a bundled template (YAML) to stdout; ``validate`` checks a document and ranks its attack
paths by risk; ``check`` reads evidence records (``scan.json``, ``privacy.json``, ``audit.json``...) and
holds each gate against them: exit 0 when every gate passes, 1 when one fails or has no evidence, 2 for
bad input (an invalid document, an unreadable or unknown evidence file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, user_errors

if TYPE_CHECKING:
    from rich.table import Column

    from bastion.governance.gates import GateResult
    from bastion.governance.threat_model import ThreatDocument

threat_app = typer.Typer(
    name="threat",
    help="Threat models and release gates: 'init' prints a template, 'validate' ranks a document's attack paths, "
    "'check' holds its gates against evidence records.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Document = Annotated[Path, typer.Argument(help="The threat model (YAML).", show_default=False)]
_STATUS = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "missing": "[yellow]missing[/]"}


@threat_app.command("init")
def init_command(
    template: Annotated[str, typer.Option("--template", "-t", help="The template to print.")] = "public-image-api",
    list_templates: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
) -> None:
    """Print a threat-model template to stdout (redirect it: bastion threat init > threat.yaml)."""
    from bastion.governance.threat_model import template_names, template_text

    with user_errors():
        if list_templates:
            for name in template_names():
                typer.echo(name)
            return
        text = template_text(template)
    typer.echo(text, nl=not text.endswith("\n"))


@threat_app.command("validate")
def validate_command(document: Document) -> None:
    """Check a threat model and print its attack paths ranked by risk (likelihood x impact)."""
    from bastion.governance.threat_model import load_threat_document

    with user_errors():
        threat = load_threat_document(document)
    _print_document(threat)


@threat_app.command("check")
def check_command(
    document: Document,
    evidence: Annotated[list[Path], typer.Option("--evidence", "-e", help="An evidence record (scan.json, "
                                                 "privacy.json, audit.json...); repeat for several.",
                                                 show_default=False)],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results to this JSON file.",
                                                  show_default=False)] = None,
) -> None:
    """Hold each gate of a threat model against evidence; exit 1 when any gate fails or has no evidence."""
    from bastion.governance.gates import evaluate_gates, gates_pass, load_evidence
    from bastion.governance.threat_model import load_threat_document
    from bastion.scan.report._common import write_text_atomically

    with user_errors():
        threat = load_threat_document(document)
        records = [load_evidence(path) for path in evidence]
        results = evaluate_gates(threat, records)
        if json_out is not None:
            write_text_atomically(json_out, json.dumps(_report(document, threat, evidence, results), indent=2))
    _print_results(threat, results, evidence)
    if json_out is not None:
        console.print(f"results: {json_out}", highlight=False, soft_wrap=True)
    if not gates_pass(results):
        raise typer.Exit(1)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _id_column(header: str, ids: list[str]) -> Column:
    """A column that shows every id whole in a narrow terminal (the other columns wrap instead): ``AML.T0024.000``
    and ``AML.T0024.002`` are different techniques. Give several ids of a cell one a line."""
    from rich.table import Column

    return Column(header, no_wrap=True, min_width=max([len(header), *map(len, ids)]))


def _print_document(threat: ThreatDocument) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    system = threat.system
    console.print(f"[bold]{escape(system.name)}[/]: {system.exposure} {system.modality} model answering with "
                  f"{system.output}; sha256 {threat.sha256()}", highlight=False, soft_wrap=True)
    paths = threat.ranked_paths()
    table = Table("#", _id_column("attack path", [path.id for path in paths]), Column("title", overflow="fold"),
                  _id_column("attacker", [path.attacker for path in paths]),
                  _id_column("ATLAS", [atlas for path in paths for atlas in path.atlas]), "L x I", "risk", "gates")
    for rank, path in enumerate(paths, start=1):
        gates = str(len(path.requires)) if path.requires else "[yellow]none[/]"
        table.add_row(str(rank), escape(path.id), escape(path.title), escape(path.attacker),
                      escape("\n".join(path.atlas)), f"{path.likelihood} x {path.impact}", str(path.risk), gates)
    console.print(table)
    ungated = [path.id for path in paths if not path.requires]
    if ungated:
        console.print(f"[yellow]no gate:[/] {escape(', '.join(ungated))} (no evidence answers them; review by hand)",
                      highlight=False, soft_wrap=True)


def _print_results(threat: ThreatDocument, results: list[GateResult], evidence: list[Path]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(_id_column("attack path", [result.path for result in results]), "risk", "gate", "status", "value",
                  "threshold", "evidence")
    for result in results:
        source = "-" if result.source is None else escape(str(evidence[result.source.index]))
        threshold = f"{'≥' if result.bound == 'min' else '≤'} {_number(result.threshold)}"
        table.add_row(escape(result.path), str(result.risk), escape(result.description), _STATUS[result.status],
                      _number(result.value), threshold, source)
    console.print(table)
    for result in results:
        if result.reason is not None:
            console.print(f"{_STATUS[result.status]} {escape(result.gate)}: {escape(result.reason)}", highlight=False,
                          soft_wrap=True)
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "missing")}
    if not results:
        console.print(f"[yellow]{escape(threat.system.name)}'s threat model defines no gates[/]")
    elif counts["pass"] == len(results):
        console.print(f"[green]all {len(results)} gates pass[/]")
    else:
        console.print(f"[bold red]release blocked:[/] {counts['fail']} failed, {counts['missing']} missing, "
                      f"{counts['pass']} passed of {len(results)} gates")


def _report(document: Path, threat: ThreatDocument, evidence: list[Path], results: list[GateResult]) -> dict:
    from bastion.governance.gates import gates_pass

    return {
        "document": str(document),
        "document_sha256": threat.sha256(),
        "system": threat.system.name,
        "passed": gates_pass(results),
        "evidence": [str(path) for path in evidence],
        "results": [result.model_dump(mode="json") for result in results],
    }
