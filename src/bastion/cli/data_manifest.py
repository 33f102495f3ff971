"""``bastion data manifest|keygen|sign|verify|diff``: tamper-evident dataset manifests.

Exit codes of ``verify``: 0 when the data (and the signatures) match the manifest, 1 when anything
differs (a changed, added, removed, relabelled or moved sample, an invalid or missing trusted
signature, a tampered manifest), 2 for bad input (a missing path, a malformed manifest).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bastion.cli.console import console, errors, user_errors
from bastion.cli.data import data_app
from bastion.core.errors import InputError

if TYPE_CHECKING:  # the manifest machinery (NumPy, cryptography) is imported by the commands that use it
    from bastion.data.changes import Changes, ClassCount
    from bastion.data.signing import SignatureReport

Show = Annotated[int, typer.Option(help="Rows of differences to print (0: all).")]
DEFAULT_SHOWN = 50


@data_app.command("manifest")
def manifest_command(
    path: Annotated[Path, typer.Argument(help="The dataset: a folder of images per class, .npz, .csv or .parquet.")],
    out: Annotated[Path | None, typer.Option(help="Manifest file to write (default: PATH.manifest.json next to "
                                             "the dataset).")] = None,
    source: Annotated[str | None, typer.Option(help="Where the data came from, e.g. 'vendor-x export'.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns the data, e.g. a team.")] = None,
    collected: Annotated[str | None, typer.Option(help="When it was collected: an ISO date (2026-10-05, "
                                                  "2026-10).")] = None,
    transform: Annotated[list[str] | None, typer.Option(help="A transform applied to the data (repeatable), "
                                                        "in order.")] = None,
    schema: Annotated[Path | None, typer.Option(help="YAML/JSON schema a CSV/Parquet table must match.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of a table (default: the schema's, "
                                                     "else 'label').")] = None,
) -> None:
    """Hash every sample of a dataset into a manifest: ids, labels, locations, counts, Merkle root, provenance."""
    from bastion.data.manifest import Provenance, build_manifest, write_manifest
    from bastion.data.schema import load_schema

    with user_errors():
        target = out or path.resolve().with_name(f"{path.resolve().name}.manifest.json")  # '.' has no name
        if target.is_dir():
            raise InputError(f"--out {target} is a folder; name the manifest file, e.g. "
                             f"{target / (path.resolve().name + '.manifest.json')}")
        _refuse_inside(target, path)
        provenance = Provenance(source=source, owner=owner, collected=collected, transforms=transform or [])
        table_schema = load_schema(schema) if schema is not None else None
        manifest = build_manifest(path, provenance=provenance, schema=table_schema, label_column=label_column)
        write_manifest(manifest, target)
    console.print(f"{manifest.count} samples in {len(manifest.class_counts)} classes ({manifest.format}), "
                  f"Merkle root {manifest.merkle_root}")
    console.print(_counts_table(manifest.class_counts))
    console.print(f"manifest: {target}")


@data_app.command("keygen")
def keygen_command(
    out: Annotated[Path, typer.Option(help="Private key file (mode 0600); the public key goes next to it "
                                      "as .pub.")] = Path("release.key"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing key pair.")] = False,
) -> None:
    """Create an ed25519 key pair for signing manifests."""
    from bastion.data.signing import generate_key_pair, key_id, load_public_key

    with user_errors():
        private, public = generate_key_pair(out, overwrite=force)
        identity = key_id(load_public_key(public))
    console.print(f"private key: {private} (keep it secret)\npublic key: {public} (share it with verifiers)\n"
                  f"key id: {identity}")


@data_app.command("sign")
def sign_command(
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="Manifest file to sign (in place).")],
    key: Annotated[Path, typer.Option(help="Private key from 'bastion data keygen'.")],
    signer: Annotated[str | None, typer.Option(help="Name of the signer (default: user@host).")] = None,
) -> None:
    """Sign a manifest with an ed25519 key; the signature covers the manifest's content (ids, labels, locations,
    counts, Merkle root, provenance), not the signer name and time written beside it."""
    from bastion.data.manifest import read_manifest, write_manifest
    from bastion.data.signing import load_private_key, sign_manifest

    with user_errors():
        manifest = read_manifest(manifest_path)
        private = load_private_key(key)
        if key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            errors.print(f"[yellow]warning:[/] {key} can be read by other users; chmod 600 it", highlight=False)
        signed = sign_manifest(manifest, private, signer=signer)
        write_manifest(signed, manifest_path)
    signature = signed.signatures[-1]
    console.print(f"signed {manifest_path} as {signature.signer}, key id {signature.key_id} "
                  f"({len(signed.signatures)} signature(s))")


@data_app.command("verify")
def verify_command(
    path: Annotated[Path, typer.Argument(help="The dataset to check.")],
    manifest_path: Annotated[Path, typer.Argument(metavar="MANIFEST", help="Its manifest.")],
    public_key: Annotated[Path | None, typer.Option(help="Trusted public key (.pub): require a valid signature "
                                                    "by it.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the full report (every difference) as JSON.")]
    = None,
    show: Show = DEFAULT_SHOWN,
) -> None:
    """Check a dataset against its manifest: names every added, removed, changed, relabelled or moved sample.

    Exit code 0: intact; 1: something differs (an entry that is not a sample, such as a stray non-image, included;
    or a signature is invalid or missing); 2: bad input.
    """
    from bastion.data.manifest import ManifestTamperedError, read_manifest, verify_dataset
    from bastion.data.signing import load_public_key, verify_signatures

    with user_errors():
        if report is not None and (report.is_dir() or not report.parent.is_dir()):
            raise InputError(f"--report {report}: give a file in an existing folder")
        trusted = load_public_key(public_key) if public_key is not None else None
        try:
            manifest = read_manifest(manifest_path)
        except ManifestTamperedError as error:
            errors.print(f"[bold red]TAMPERED:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        signatures = verify_signatures(manifest, trusted_key=trusted)
        result = verify_dataset(path, manifest)
        if report is not None:
            report.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    _print_signatures(signatures)
    if not result.identical:
        _print_changes(result, show)
        if result.class_changes:
            console.print(_class_table(result.class_changes))
    _print_strays(result.strays, show)
    if result.unrelated:
        console.print(f"[yellow]none of the manifest's {result.expected_count} samples is in {path}:[/] if this is "
                      "not the dataset the manifest was built from, give that one", highlight=False)
    verdict = "[bold red]DIFFERS[/]" if not result.ok else "[bold green]intact[/]" if signatures.ok else \
        "[bold red]UNTRUSTED[/] (the data matches, the signatures do not)"
    console.print(f"{verdict}: {result.found_count} samples found, {result.expected_count} in the manifest; "
                  f"{result.summary()} ({result.seconds:.1f} s)")
    if not (result.ok and signatures.ok):
        raise typer.Exit(1)


@data_app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The older manifest.")],
    new: Annotated[Path, typer.Argument(help="The newer manifest.")],
    show: Show = DEFAULT_SHOWN,
) -> None:
    """What changed between two manifests: samples added, removed, relabelled, changed, moved; counts by class."""
    from bastion.data.manifest import diff_manifests, read_manifest

    with user_errors():
        diff = diff_manifests(read_manifest(old), read_manifest(new))
    if diff.identical:
        console.print(f"no differences: {sum(c.new for c in diff.class_counts.values())} samples, same content")
        return
    _print_changes(diff, show)
    console.print(_class_table(diff.class_counts))
    console.print(f"{old} -> {new}: {diff.summary()}")


def _refuse_inside(target: Path, dataset: Path) -> None:
    """A manifest written inside the image folder it describes would make that folder fail to verify."""
    if dataset.is_dir() and target.resolve().is_relative_to(dataset.resolve()):
        raise InputError(f"{target} is inside the dataset folder {dataset}; write the manifest outside it "
                         "(the folder may only hold class folders)")


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table("class", "samples", title="samples per class")
    for name, count in counts.items():
        table.add_row(name, str(count))
    return table


def _class_table(counts: dict[str, ClassCount]) -> Table:
    table = Table("class", "before", "after", "change", title="samples per class")
    for name, count in counts.items():
        change = f"{count.delta:+d}" if count.delta else ""
        table.add_row(name, str(count.old), str(count.new), change)
    return table


def _print_changes(changes: Changes, show: int) -> None:
    rows = changes.all
    shown = rows if show <= 0 else rows[:show]
    table = Table("change", "location", "label", "id", "what changed", title="differences")
    for change in shown:
        table.add_row(change.kind, change.location, change.label, change.id[:16], change.description)
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"... and {len(rows) - len(shown)} more (pass --show 0 for all, or --report FILE)")


def _print_strays(strays: list[str], show: int) -> None:
    shown = strays if show <= 0 else strays[:show]
    for stray in shown:
        console.print(f"[bold red]not a sample:[/] {stray}", highlight=False, soft_wrap=True)
    if len(shown) < len(strays):
        console.print(f"... and {len(strays) - len(shown)} more entries that are not samples (--show 0 for all)")


def _print_signatures(report: SignatureReport) -> None:
    colour = "green" if report.ok and report.trusted_key_id else "red" if not report.ok else "yellow"
    console.print(f"signatures: [{colour}]{report.summary}[/]", highlight=False)
    for check in report.checks:
        console.print(f"  {check.signer} (key {check.key_id[:16]}...): {check.status}: {check.message}",
                      highlight=False)

