"""The canonical rendering of a scan: its evidence record as JSON, and reading it back."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bastion.core.errors import InputError
from bastion.core.records import ScanRecord
from bastion.scan.report._common import write_text_atomically

_MAX_ERRORS_SHOWN = 5


def write_json(record: ScanRecord, path: str | Path) -> Path:
    """Write ``record`` as indented JSON (the canonical form every other report renders).

    Raises:
        InputError: ``path`` cannot be written.
    """
    return write_text_atomically(Path(path), record.model_dump_json(indent=2) + "\n")


def read_json(path: str | Path) -> ScanRecord:
    """Read a scan record written by :func:`write_json`.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a valid scan record.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"cannot read scan record {path}: {reason}") from error
    try:
        return ScanRecord.model_validate_json(raw)
    except ValidationError as error:
        problems = _summarise(error)
        raise InputError(f"{path} is not a valid bastion scan record: {problems}") from error


def _summarise(error: ValidationError) -> str:
    """The first few problems as ``field.path: message`` (a JSON syntax error included)."""
    problems = []
    for item in error.errors()[:_MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in item["loc"]) or "(file)"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"... and {more} more")
    return "; ".join(problems)
