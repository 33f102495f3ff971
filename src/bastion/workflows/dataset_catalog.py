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
from bastion.storage.tables import DatasetRow, DatasetVersionRow

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
                             f"several datasets are under version control ({', '.join(names)}); name one")
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
