"""Finding datasets and their versions among the database rows, and checking the names given to them.

``dataset_for_commit`` finds the dataset a commit goes to, or adds it when the name is new.

A dataset is named by its name, or ``None`` for the only one; a version by its number (``3``, ``"3"``,
``"v3"``) or its release tag, or ``None`` for the current one.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.core.errors import InputError
from bastion.storage.tables import DatasetRow, DatasetVersionRow, LedgerEntry

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_VERSION = re.compile(r"[vV]?(\d+)")


def check_dataset_name(name: str) -> str:
    """``name``, if it can name a dataset (letters, digits, '.', '_', '-')."""
    if not _NAME.fullmatch(name):
        raise InputError(f"dataset name {name!r} must be letters, digits, '.', '_' or '-' and start with a letter or "
                         "digit; pass --name")
    return name


def check_release_tag(tag: str) -> str:
    """``tag`` without surrounding blanks, if it can name a release and cannot be read as a version number."""
    tag = tag.strip()
    if not tag or _VERSION.fullmatch(tag) or not _NAME.fullmatch(tag):
        raise InputError(f"release tag {tag!r} must be letters, digits, '.', '_' or '-', start with a letter "
                         "or digit, and not look like a version number (v3); e.g. 2026-q1")
    return tag


def find_dataset(session: Session, name: str | None) -> DatasetRow:
    """The dataset named ``name`` (``None``: the only one); raises ``InputError`` naming the known ones."""
    if name is None:
        names = session.scalars(select(DatasetRow.name).order_by(DatasetRow.name)).all()
        if len(names) != 1:
            raise InputError("no dataset is under version control yet; commit one with 'bastion data commit "
                             "PATH -m MESSAGE'" if not names else
                             f"several datasets are under version control ({', '.join(names)}); name one: "
                             "`bastion data log NAME`, `--name NAME` for the other commands")
        name = names[0]
    dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if dataset is None:
        known = session.scalars(select(DatasetRow.name).order_by(DatasetRow.name)).all()
        raise InputError(f"no dataset named {name!r}; known: {', '.join(known) or 'none (commit one first)'}")
    return dataset


def find_version(dataset: DatasetRow, version: int | str | None) -> DatasetVersionRow:
    """The version named by number or release tag (``None``: the current one)."""
    if version is None:
        row = current_version_row(dataset)
        if row is None:
            raise InputError(f"{dataset.name} has no versions")
        return row
    text = str(version).strip()
    match = _VERSION.fullmatch(text)
    for row in dataset.versions:
        if (match and row.number == int(match.group(1))) or (not match and row.release_tag == text):
            return row
    numbers = ", ".join(f"v{row.number}" + (f" ({row.release_tag})" if row.release_tag else "")
                        for row in dataset.versions)
    raise InputError(f"{dataset.name} has no version {text!r}; versions: {numbers or 'none'}")


def current_version_row(dataset: DatasetRow) -> DatasetVersionRow | None:
    """The row of the dataset's current version, if it has one."""
    return next((row for row in dataset.versions if row.number == dataset.current_version), None)


def dataset_for_commit(session: Session, name: str, root: Path, format: str, *, created_at: datetime) -> DatasetRow:
    """The dataset a commit of ``root`` under ``name`` goes to, added (made at ``created_at``) when it is new.

    Raises:
        InputError: ``name`` tracks another path or format, or ``root`` is tracked under another name.
    """
    dataset = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if dataset is None:
        other = session.scalar(select(DatasetRow).where(DatasetRow.root == str(root)))
        if other is not None:
            raise InputError(f"{root} is already tracked as dataset {other.name!r}; commit it under that name")
        dataset = DatasetRow(name=name, root=str(root), format=format, current_version=None,
                             created_at=created_at)
        session.add(dataset)
        session.flush()
    elif dataset.root != str(root):
        raise InputError(f"dataset {name!r} is tracked at {dataset.root}, not {root}; commit that path, or pass "
                         "--name to track this one as another dataset")
    elif dataset.format != format:
        raise InputError(f"dataset {name!r} is in {dataset.format} format but {root} is {format}")
    return dataset


def next_version_number(session: Session, dataset: DatasetRow) -> int:
    """One more than the highest version number the dataset has had."""
    return (session.scalar(select(func.max(DatasetVersionRow.number))
                           .where(DatasetVersionRow.dataset_id == dataset.id)) or 0) + 1


# --- versions against the ledger ------------------------------------------------------------------

#: The fields of a version row the ledger records, as (row attribute, what messages call it).
_RECORDED = ("manifest_object", "files_object", "merkle_root", "sample_count", "release_tag", "status", "author",
             "message", "parent")


def recorded_versions(session: Session, dataset: str) -> dict[int, dict[str, object]]:
    """What the ledger recorded for each version of ``dataset``: number -> the fields of its row.

    Replays the ``dataset.commit`` and ``dataset.quarantine`` entries (a new version: its objects, root,
    sample count, author, message and parent) and ``dataset.release`` entries (its tag and status), oldest first.
    """
    versions: dict[int, dict[str, object]] = {}
    query = (select(LedgerEntry).where(LedgerEntry.subject == f"dataset:{dataset}",
                                       LedgerEntry.action.in_(("dataset.commit", "dataset.quarantine",
                                                               "dataset.release")))
             .order_by(LedgerEntry.seq))
    for entry in session.scalars(query):
        payload = entry.payload if isinstance(entry.payload, dict) else {}
        number = payload.get("version")
        if not isinstance(number, int):
            continue
        if entry.action == "dataset.release":
            record = versions.setdefault(number, {})
            record.update(release_tag=payload.get("tag"), status="released")
        else:
            versions[number] = {"manifest_object": payload.get("manifest_object"),
                                "files_object": payload.get("files_object"),
                                "merkle_root": payload.get("merkle_root"), "sample_count": payload.get("samples"),
                                "release_tag": None, "status": "committed", "author": entry.actor,
                                **{field: payload[field] for field in ("message", "parent") if field in payload}}
    return versions


def version_problems(session: Session, dataset: DatasetRow, only: DatasetVersionRow | None = None) -> list[str]:
    """Where the ``dataset_versions`` rows of ``dataset`` (or just ``only``) disagree with the ledger.

    Each problem names the dataset and the version. An empty list: every row is what the ledger recorded.
    """
    recorded = recorded_versions(session, dataset.name)
    rows = [only] if only is not None else list(dataset.versions)
    problems = []
    for row in rows:
        expected = recorded.get(row.number)
        if expected is None or "manifest_object" not in expected:
            problems.append(f"{dataset.name} v{row.number}: no ledger entry records this version (the row was "
                            "added or renumbered behind bastion's back)")
            continue
        wrong = [f"{field} is {getattr(row, field)!r} but the ledger recorded {expected.get(field)!r}"
                 for field in _RECORDED if field in expected and getattr(row, field) != expected[field]]
        if wrong:
            problems.append(f"{dataset.name} v{row.number}: the dataset_versions row was edited: {'; '.join(wrong)}")
    if only is None:
        numbers = {row.number for row in rows}
        problems.extend(f"{dataset.name} v{number}: recorded in the ledger but its row is missing (deleted)"
                        for number in sorted(recorded)
                        if number not in numbers and "manifest_object" in recorded[number])
    return problems


def check_version(session: Session, dataset: DatasetRow, row: DatasetVersionRow) -> DatasetVersionRow:
    """``row``, if it agrees with the ledger; raises ``InputError`` naming what was edited otherwise."""
    problems = version_problems(session, dataset, row)
    if problems:
        raise InputError(f"refusing to use {dataset.name} v{row.number}: its record does not match the ledger "
                         f"({'; '.join(problems)}). Run `bastion data ledger --verify` and restore the database "
                         "from a backup")
    return row


def all_version_problems(session: Session) -> list[str]:
    """``version_problems`` of every dataset, by name."""
    problems: list[str] = []
    for dataset in session.scalars(select(DatasetRow).order_by(DatasetRow.name)):
        problems.extend(version_problems(session, dataset))
    return problems
