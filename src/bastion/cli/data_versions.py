"""``bastion data commit|log|checkout|release|rollback|ledger``: dataset versions and the ledger.

State lives in ``--home`` (default ``$BASTION_HOME``, else ``./.bastion``): the database, the object
store, quarantined samples and the ledger's head anchor. ``--as`` names who acts (default
``$BASTION_USER``, else the OS user name); every change is a ledger entry naming them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.console import console, errors, user_errors
from bastion.cli.data import data_app

if TYPE_CHECKING:
    from bastion.storage.ledger import LedgerCheck
    from bastion.storage.tables import LedgerEntry
    from bastion.workflows.dataset_store import DatasetStore

Home = Annotated[Path | None, typer.Option(
    "--home", help="Folder of bastion's state (database, objects, ledger anchor). Default: $BASTION_HOME, "
    "else ./.bastion.", show_default=False)]
Actor = Annotated[str | None, typer.Option(
    "--as", help="Who is acting, recorded in the ledger. Default: $BASTION_USER, else the OS user name.",
    show_default=False)]
Name = Annotated[str | None, typer.Option(
    "--name", help="The dataset (default: the only one under version control).", show_default=False)]
Version = Annotated[str, typer.Argument(help="A version: 3 or v3, or a release tag.", show_default=False)]


@contextmanager
def _store(home: Path | None, *, create: bool = False) -> Iterator[DatasetStore]:
    """The store in ``home``; only ``create=True`` (commit) makes one where there is none."""
    from bastion.workflows.dataset_store import open_dataset_store

    store = open_dataset_store(home, create=create)
    try:
        yield store
    finally:
        store.close()


@data_app.command("commit")
def commit_command(
    path: Annotated[Path, typer.Argument(help="The dataset: a folder of images per class, or an .npz, .csv or "
                                         ".parquet file.", show_default=False)],
    message: Annotated[str, typer.Option("--message", "-m", help="What changed and why.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the folder's or file's name).",
                                             show_default=False)] = None,
    schema: Annotated[Path | None, typer.Option(help="YAML/JSON schema a CSV/Parquet table must match.",
                                                show_default=False)] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of a table (default: the schema's, "
                                                     "else 'label').", show_default=False)] = None,
    actor: Actor = None,
    home: Home = None,
) -> None:
    """Record the dataset at PATH as a new version: every file's bytes, its manifest, a ledger entry."""
    with user_errors(), _store(home, create=True) as store:
        from bastion.data.schema import load_schema

        info = store.commit(path, message=message, actor=actor, name=name, label_column=label_column,
                            schema=load_schema(schema) if schema else None)
        parent = f", parent v{info.parent}" if info.parent else ""
        console.print(f"committed {info.dataset} {info.label}: {info.sample_count} samples, merkle root "
                      f"{info.merkle_root[:16]}{parent}", highlight=False)


@data_app.command("log")
def log_command(
    name: Annotated[str | None, typer.Argument(help="The dataset (default: the only one).", show_default=False)] = None,
    home: Home = None,
) -> None:
    """List a dataset's versions, newest first, one a line; the current one is marked with *."""
    with user_errors(), _store(home) as store:
        versions = store.log(name)
        console.print(f"[bold]{versions[0].dataset}[/] ({versions[0].format}) at {versions[0].path}", highlight=False)
        for info in reversed(versions):
            release = f"[green]released as {info.release_tag}[/]  " if info.release_tag else ""
            when = info.created_at.strftime("%Y-%m-%d %H:%M")
            console.print(f"{'*' if info.current else ' '} [bold]{info.label:<4}[/] {when} UTC  {info.author}  "
                          f"{info.sample_count} samples  root {info.merkle_root[:12]}  {release}{info.message}",
                          highlight=False, soft_wrap=True)


@data_app.command("checkout")
def checkout_command(
    version: Version,
    name: Name = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the version (default: the dataset's working "
                                             "copy).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Overwrite content that is not a committed version.")] = False,
    home: Home = None,
) -> None:
    """Restore a version's files byte for byte (the current version does not change; see rollback)."""
    with user_errors(), _store(home) as store:
        info = store.version(name, version)
        target = store.checkout(name, version, dest=out, force=force)
        console.print(f"checked out {info.dataset} {info.label} ({info.sample_count} samples) to {target}",
                      highlight=False)


@data_app.command("release")
def release_command(
    version: Version,
    tag: Annotated[str, typer.Option(help="Release tag, unique per dataset, e.g. 2026-q1.", show_default=False)],
    name: Name = None,
    actor: Actor = None,
    home: Home = None,
) -> None:
    """Mark a version as released under a tag; recorded in the ledger."""
    with user_errors(), _store(home) as store:
        info = store.release(name, version, tag=tag, actor=actor)
        console.print(f"released {info.dataset} {info.label} as {info.release_tag}", highlight=False)


@data_app.command("rollback")
def rollback_command(
    version: Version,
    name: Name = None,
    force: Annotated[bool, typer.Option(help="Overwrite a working copy that is not a committed version.")] = False,
    actor: Actor = None,
    home: Home = None,
) -> None:
    """Make an earlier version current again and restore its files; recorded in the ledger."""
    with user_errors(), _store(home) as store:
        info = store.rollback(name, version, actor=actor, force=force)
        console.print(f"rolled {info.dataset} back to {info.label} ({info.sample_count} samples); restored "
                      f"{info.path}", highlight=False)


@data_app.command("ledger")
def ledger_command(
    verify: Annotated[bool, typer.Option("--verify", help="Recompute the hash chain and check its head anchor; "
                                         "exit 1 naming the first bad entry when it was tampered with.")] = False,
    limit: Annotated[int, typer.Option(help="Entries to list (the last ones).")] = 20,
    subject: Annotated[str | None, typer.Option(help="Only entries about this subject, e.g. dataset:train.",
                                                show_default=False)] = None,
    reanchor: Annotated[bool, typer.Option("--reanchor", help="Accept the ledger's current last entry as the "
                                           "trusted head (after checking entries --verify reports as not covered "
                                           "by the anchor).")] = False,
    objects: Annotated[bool, typer.Option("--objects", help="With --verify: also re-hash every stored object the "
                                          "versions use (manifests, file indexes, each file's bytes); exit 1 naming "
                                          "each missing or corrupt one.")] = False,
    home: Home = None,
) -> None:
    """List the last ledger entries, or verify the whole chain with --verify (and the stored files with --objects)."""
    from bastion.storage import ledger
    from bastion.storage.database import open_database

    with user_errors():
        if limit < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--limit")
        if objects and not verify:
            raise typer.BadParameter("goes with --verify", param_hint="--objects")
        database = open_database(home=home, create=False)
        try:
            with database.sessions() as session:
                if reanchor:
                    old = ledger.anchored_head(session)
                    seq = ledger.reanchor(session)
                    if old is not None and (seq or 0) < old[0]:
                        errors.print(f"[yellow]warning:[/] the head anchor moved back from entry {old[0]} to "
                                     f"{seq or 0}: entries {(seq or 0) + 1}..{old[0]} were lost (cut off the end of "
                                     "the ledger); restore the database from a backup if that was not intended",
                                     highlight=False, soft_wrap=True)
                    console.print(f"head anchor set to entry {seq}" if seq else "the ledger is empty")
                if verify:
                    from bastion.workflows.dataset_catalog import all_version_problems

                    _report_check(ledger.verify(session), all_version_problems(session),
                                  _object_problems(home) if objects else None)
                elif not reanchor:
                    _print_entries(ledger.entries(session, subject=subject, limit=limit))
        finally:
            database.dispose()


def _print_entries(entries: list[LedgerEntry]) -> None:
    """One line per entry, like ``git log --oneline``: lines wrap between words, never inside a hash."""
    if not entries:
        console.print("the ledger is empty")
        return
    for entry in entries:
        details = " ".join(f"{key}={value}" for key, value in entry.payload.items()
                           if key in ("version", "from_version", "tag", "samples", "reason", "message", "alias",
                                      "from", "to", "status"))
        console.print(f"[bold]{entry.seq:>5}[/]  {entry.time.strftime('%Y-%m-%d %H:%M:%S')}  {entry.entry_hash[:12]}  "
                      f"{entry.actor}  [cyan]{entry.action}[/]  {entry.subject}  [dim]{details}[/]",
                      highlight=False, soft_wrap=True, markup=True)


#: Damaged objects named one by one; a lost objects folder would print one line per file.
OBJECT_PROBLEMS_SHOWN = 20


def _object_problems(home: Path | None) -> list[str]:
    with _store(home) as store:
        return store.object_problems()


def _report_check(check: LedgerCheck, versions: list[str], objects: list[str] | None = None) -> None:
    """Print the check; exit 1 when the chain is broken, a version row disagrees with the ledger or (``objects``
    given: the store was checked) a stored object is missing, corrupt or unreadable."""
    for warning in check.warnings:
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for problem in versions:
        errors.print(f"[bold red]version does not match the ledger:[/] {problem}", highlight=False, soft_wrap=True)
    for problem in (objects or [])[:OBJECT_PROBLEMS_SHOWN]:
        errors.print(f"[bold red]stored object damaged:[/] {problem}", highlight=False, soft_wrap=True)
    if objects and len(objects) > OBJECT_PROBLEMS_SHOWN:
        errors.print(f"  ... and {len(objects) - OBJECT_PROBLEMS_SHOWN} more", highlight=False)
    if not check.ok:
        errors.print(f"[bold red]ledger tampered:[/] entry {check.first_bad_seq}: {check.problem}", highlight=False,
                     soft_wrap=True)
        for problem in check.problems[1:6]:
            errors.print(f"  also entry {problem.seq}: {problem.problem}", highlight=False, soft_wrap=True)
        if len(check.problems) > 6:
            errors.print(f"  ... and {len(check.problems) - 6} more", highlight=False)
        raise typer.Exit(1)
    if check.checked and check.anchored_seq is None:  # deleting the anchor must not pass the check
        errors.print("[bold red]ledger unanchored:[/] entries cut off its end cannot be ruled out. If this home was "
                     "moved or copied (the anchor names the database by its path), check the last entries, then "
                     "accept them with `bastion data ledger --reanchor`", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    anchored = f", head anchor at entry {check.anchored_seq}" if check.anchored_seq else ""
    console.print(f"ledger ok: {check.checked} entries, hash chain intact{anchored}", highlight=False)
    if objects is not None:
        console.print(f"{len(objects)} stored object(s) damaged" if objects else
                      "objects ok: every stored file of every version re-hashed to its name", highlight=False)
    if versions or objects:
        raise typer.Exit(1)
