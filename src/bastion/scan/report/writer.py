"""Write every rendering of a scan into one folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bastion.core.errors import InputError
from bastion.scan.defense_record import DEFENSE_FILE
from bastion.scan.outcome import ScanOutcome
from bastion.scan.report.html import write_html
from bastion.scan.report.json_report import write_json
from bastion.scan.report.junit import write_junit
from bastion.scan.report.sarif import write_sarif

REPORT_FILES: dict[str, str] = {
    "json": "scan.json",
    "html": "scan.html",
    "sarif": "scan.sarif",
    "junit": "junit.xml",
}


def write_reports(outcome: ScanOutcome, out_dir: str | Path) -> dict[str, Path]:
    """Write ``scan.json``, ``scan.html``, ``scan.sarif`` and ``junit.xml`` into ``out_dir``.

    The folder is created when missing. JSON is written first: it is the canonical evidence. A
    defended scan (``outcome.defense`` set) also writes ``defense.json``; a plain scan removes the
    ``defense.json`` of an earlier defended scan in the folder, which would describe a ``scan.json`` that
    is no longer there (a file of that name that is not a bastion defense record is left alone).

    Returns:
        The path of each file, keyed ``"json"``, ``"html"``, ``"sarif"`` and ``"junit"`` (and
        ``"defense"`` for a defended scan).

    Raises:
        InputError: ``out_dir`` is an existing file, or cannot be created or written.
    """
    folder = prepare_folder(out_dir)
    paths = {kind: folder / name for kind, name in REPORT_FILES.items()}
    write_json(outcome.record, paths["json"])
    if outcome.defense is not None:
        paths["defense"] = write_json(outcome.defense, folder / DEFENSE_FILE)
    else:
        _remove_stale_defense_record(folder / DEFENSE_FILE)
    write_html(outcome, paths["html"])
    write_sarif(outcome.record, paths["sarif"])
    write_junit(outcome.record, paths["junit"])
    return paths


def _remove_stale_defense_record(path: Path) -> None:
    """Remove ``path`` if it holds a bastion defense record (JSON with ``"kind": "defense-scan"``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return  # absent, unreadable or not JSON: not ours to remove
    if isinstance(document, dict) and document.get("kind") == "defense-scan":
        path.unlink(missing_ok=True)


def prepare_folder(out_dir: str | Path) -> Path:
    """Create the report folder (or accept an existing one); call it before a long scan, so a bad
    path fails at once instead of after the work is done."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"report folder {folder} exists and is a file; pass a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"cannot create report folder {folder}: {reason}") from error
    return folder


@contextmanager
def report_folder(out_dir: str | Path) -> Iterator[Path]:
    """:func:`prepare_folder` for a run that may fail: when the block raises (or is interrupted), the folders it
    created (``out_dir`` and any missing parents) are removed again while they are still empty, so a failed run
    leaves no empty folder behind. A folder that existed before, or that now holds files, is kept."""
    folder = Path(out_dir)
    # A missing folder reached through ``..`` (``new/../existing``) may name one that exists: never remove that.
    created = [path for path in _missing_folders(folder) if not path.resolve().exists()]
    try:
        yield prepare_folder(folder)
    except BaseException:
        _remove_empty(created)
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is an empty folder, and no other."""
    for folder in folders:
        try:
            folder.rmdir()  # refuses a folder that holds anything
        except OSError:
            continue
