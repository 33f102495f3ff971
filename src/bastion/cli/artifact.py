"""``bastion artifact scan``: check model files for code that loading them would run, without loading them.

Exit codes: 0 every file is safe, 1 a file has a ``high`` or ``critical`` finding (an empty file has one: it
holds no model), 2 bad input (a missing file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, printable, user_errors
from bastion.core.errors import InputError

if TYPE_CHECKING:
    from bastion.artifacts import ArtifactScan

artifact_app = typer.Typer(
    name="artifact",
    help="Check model files before loading them: 'scan' finds pickles (torch, joblib, numpy, skops) that would "
    "run code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


@artifact_app.command("scan")
def scan_command(
    paths: Annotated[list[Path], typer.Argument(help="Model files: .pkl, .joblib, .pt/.pth, .npy, .npz, "
                                                     ".safetensors, .skops (any name: formats are sniffed).",
                                                show_default=False)],
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write every scan to this JSON file.",
                                                   show_default=False)] = None,
    max_depth: Annotated[int, typer.Option(help="Archives (and compressed streams) opened one inside another; "
                                           "deeper ones are reported, not scanned.")] = 3,
    max_bytes: Annotated[int, typer.Option(help="Bytes read into memory from archive members and compressed "
                                           "streams, per file (a zip bomb stops there).")] = 2**31,
) -> None:
    """Scan model files without unpickling them; exit 1 when any has a high or critical finding."""
    from bastion.artifacts import scan_artifact

    with user_errors():
        scans = [scan_artifact(path, max_depth=max_depth, max_bytes=max_bytes) for path in paths]
        if json_file is not None:
            _write_json(json_file, scans)
    for scan in scans:
        _print_scan(scan)
    unsafe = sum(not scan.safe for scan in scans)
    if len(scans) > 1:
        console.print(f"{len(scans)} files: {len(scans) - unsafe} safe, {unsafe} unsafe", highlight=False)
    if unsafe:
        raise typer.Exit(1)


def _write_json(path: Path, scans: list[ArtifactScan]) -> None:
    document = {"safe": all(scan.safe for scan in scans), "files": [scan.model_dump(mode="json") for scan in scans]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write --json {path}: {error.strerror or error}") from error


def _print_scan(scan: ArtifactScan) -> None:
    from rich.table import Table
    from rich.text import Text

    verdict = Text("SAFE", style="bold green") if scan.safe else Text("UNSAFE", style="bold red")
    console.print(Text.assemble((printable(scan.path), "bold"), f"  {scan.format}  sha256 {scan.sha256[:16]}  ",
                                verdict))
    if not scan.findings:
        allowed = f" ({len(scan.imports)} imports, all on the allowlist)" if scan.imports else ""
        console.print(f"  no findings{allowed}", highlight=False)
        return
    table = Table("severity", "kind", "where", "finding")
    for finding in scan.findings:
        table.add_row(Text(finding.severity, style=_SEVERITY_STYLE[finding.severity]), finding.kind,
                      Text(printable(finding.location)), Text(printable(finding.message)))
    console.print(table)
