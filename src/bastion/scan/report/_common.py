"""Small helpers shared by the report renderers: number formats, class names, safe file writes."""

from __future__ import annotations

from pathlib import Path

from bastion.core.errors import InputError
from bastion.core.files import write_atomically
from bastion.core.threat import Norm

_NORM_SYMBOLS: dict[str, str] = {"linf": "L∞", "l2": "L2"}


def percent(value: float | None, digits: int = 1) -> str:
    """``0.4231 -> "42.3%"``; ``None`` (not measured) renders as an em dash."""
    if value is None:
        return "—"
    return f"{100.0 * value:.{digits}f}%"


def format_eps(eps: float) -> str:
    """A budget as the user typed it: ``0.03137 -> "0.03137"``, ``8/255`` stays short."""
    return f"{eps:.4g}"


def norm_symbol(norm: Norm) -> str:
    """``"linf" -> "L∞"``, ``"l2" -> "L2"``."""
    return _NORM_SYMBOLS.get(norm, norm)


def class_name(class_names: list[str], label: int) -> str:
    """The name of class ``label``, or the number itself when no name is known."""
    if 0 <= label < len(class_names):
        return class_names[label]
    return str(label)


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file: no reader sees half a report.

    Raises:
        InputError: the file or its folder cannot be written.
    """
    path = Path(path)
    try:
        write_atomically(path, text.encode("utf-8"))
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"cannot write report file {path}: {reason}") from error
    return path
