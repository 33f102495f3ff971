"""The canonical rendering of a scan: its evidence record as JSON, and reading it back."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bastion.core.errors import InputError, validation_problems
from bastion.core.records import ScanRecord
from bastion.scan.defense_record import DefenseScanRecord
from bastion.scan.report._common import write_text_atomically

RecordT = TypeVar("RecordT", bound=BaseModel)


def write_json(record: ScanRecord | DefenseScanRecord, path: str | Path) -> Path:
    """Write ``record`` (a scan, or a defended scan's ``defense.json``) as indented JSON, the canonical form.

    Raises:
        InputError: ``path`` cannot be written.
    """
    return write_text_atomically(Path(path), record.model_dump_json(indent=2) + "\n")


def read_json(path: str | Path) -> ScanRecord:
    """Read a scan record written by :func:`write_json`.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a valid scan record.
    """
    return _read(path, ScanRecord, "scan record")


def read_defense_json(path: str | Path) -> DefenseScanRecord:
    """Read a defended scan's ``defense.json`` written by :func:`write_json`.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a valid defense-scan record.
    """
    return _read(path, DefenseScanRecord, "defense-scan record")


def _read(path: str | Path, model: type[RecordT], what: str) -> RecordT:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"cannot read {what} {path}: {reason}") from error
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = validation_problems(error, whole="(file)")
        raise InputError(f"{path} is not a valid bastion {what}: {problems}") from error
