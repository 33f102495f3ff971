"""Answers a remote endpoint already gave, kept by the content hash of each input sample.

Always in memory; with a path, also appended to a JSON-lines file and fsynced after every answered
batch, so an attack stopped by a failing endpoint, a spent budget or a crash resumes from the file
without asking (or paying for) those samples again.

File format: a header line ``{"bastion_remote_journal": 1, "model": ..., "version": ..., "input_shape": [...],
"input_datatype": "FP32", "num_classes": C, "endpoint": "https://..."}``, then one line per answered sample:
``{"id": "<sha256 of the sample as sent>", "scores": [C numbers]}`` or ``{"id": ..., "label": k}``. Answers are
stored exactly as the endpoint gave them; the classifier turns them into logits when it reads them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.core.ids import array_digest
from bastion.models.remote_protocol import AnswerKind

JOURNAL_FORMAT = 1
#: Header fields that must match for a journal's answers to be served; ``endpoint`` is informational.
IDENTITY_FIELDS = ("model", "version", "input_shape", "input_datatype", "num_classes")
#: An answer as the endpoint gave it: raw scores ``(C,)`` float64, or a label.
RawAnswer = np.ndarray | int

_logger = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sample_key(row: np.ndarray) -> str:
    """The hex SHA-256 of one sample as sent (its dtype, shape and bytes): the journal's key."""
    return array_digest(row)


class AnswerJournal:
    """Raw answers by sample key, loaded from and appended to ``path`` when one is given.

    Args:
        path: the JSON-lines file, or ``None`` for memory only. A missing file is created (with its
            folders) at once, so an unwritable path fails before any query is paid for.
        identity: the header: ``IDENTITY_FIELDS`` (which an existing file must match) and ``endpoint``.

    Raises:
        InputError: the file belongs to another model or input format, or a line other than an unfinished
            last one is damaged. An unfinished last line (an interrupted write) is dropped with a warning.
    """

    def __init__(self, path: str | Path | None, identity: dict[str, Any]) -> None:
        self.path = None if path is None else Path(path).expanduser()
        # Through JSON once, so that the header compares equal to one read back (tuples become lists).
        self._identity = json.loads(json.dumps({"bastion_remote_journal": JOURNAL_FORMAT, **identity}))
        self._answers: dict[str, RawAnswer] = {}
        if self.path is not None:
            if self.path.is_file() and self.path.stat().st_size:
                self._load(self.path)
            else:
                self._write(self.path, [json.dumps(self._identity)])
        #: Answers read from the file when the journal was opened.
        self.loaded = len(self._answers)

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: object) -> bool:
        return key in self._answers

    def get(self, key: str) -> RawAnswer | None:
        """The raw answer for ``key``, or ``None``."""
        return self._answers.get(key)

    def add(self, keys: Sequence[str], kind: AnswerKind, values: np.ndarray) -> None:
        """Record one answered batch: ``values`` ``(n, C)`` scores or ``(n,)`` labels for ``keys``; fsynced."""
        lines = []
        for key, value in zip(keys, values, strict=True):
            if kind == "labels":
                self._answers[key] = int(value)
                lines.append(json.dumps({"id": key, "label": int(value)}))
            else:
                scores = np.asarray(value, dtype=np.float64)
                self._answers[key] = scores
                lines.append(json.dumps({"id": key, "scores": scores.tolist()}))
        if self.path is not None:
            self._write(self.path, lines)

    def _write(self, path: Path, lines: list[str]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise InputError(f"cannot write the answer journal {path}: {exc}") from exc

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        if not raw.endswith(b"\n"):
            complete = raw.rfind(b"\n") + 1
            _logger.warning("%s: dropping an unfinished last line (%d bytes) left by an interrupted write",
                            path, len(raw) - complete)
            with open(path, "r+b") as handle:
                handle.truncate(complete)
                os.fsync(handle.fileno())
            raw = raw[:complete]
        lines = raw.decode("utf-8", errors="replace").splitlines()
        if not lines:  # only an unfinished header was there
            self._write(path, [json.dumps(self._identity)])
            return
        self._check_header(path, _parse_line(path, 1, lines[0]))
        classes = int(self._identity["num_classes"])
        for number, line in enumerate(lines[1:], start=2):
            key, answer = _entry(path, number, _parse_line(path, number, line), classes)
            self._answers[key] = answer

    def _check_header(self, path: Path, header: dict[str, Any]) -> None:
        if header.get("bastion_remote_journal") != JOURNAL_FORMAT:
            raise InputError(f"{path} is not a bastion answer journal (format {JOURNAL_FORMAT}); pass another path")
        found = {field: header.get(field) for field in IDENTITY_FIELDS}
        expected = {field: self._identity.get(field) for field in IDENTITY_FIELDS}
        if found != expected:
            raise InputError(f"{path} holds answers for {found}, not for this classifier {expected}; use another "
                             "journal file for this endpoint")
        if header.get("endpoint") != self._identity.get("endpoint"):
            _logger.warning("%s was written for %s; serving its answers for %s (same model and input format)",
                            path, header.get("endpoint"), self._identity.get("endpoint"))


def _parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise _damaged(path, number, f"not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise _damaged(path, number, "not a JSON object")
    return value


def _entry(path: Path, number: int, entry: dict[str, Any], classes: int) -> tuple[str, RawAnswer]:
    key = entry.get("id")
    if not isinstance(key, str) or not _SHA256.match(key):
        raise _damaged(path, number, "no sample id")
    if "label" in entry:
        label = entry["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
            raise _damaged(path, number, f"label {label!r} outside 0..{classes - 1}")
        return key, label
    scores = entry.get("scores")
    if (not isinstance(scores, list) or len(scores) != classes
            or not all(isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scores)):
        raise _damaged(path, number, f"scores are not {classes} finite numbers")
    return key, np.asarray(scores, dtype=np.float64)


def _damaged(path: Path, number: int, problem: str) -> InputError:
    return InputError(f"{path} line {number} is damaged: {problem}. Repair the line, or move the file away to "
                      "start a fresh journal (its answers would then be asked again)")
