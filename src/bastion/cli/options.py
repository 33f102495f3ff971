"""Parsing of the CLI's comma-separated values, with errors that say what was expected."""

from __future__ import annotations

from bastion.core.errors import InputError


def floats(text: str, name: str, example: str = "0.05,0.1") -> list[float]:
    """``"0.05,0.1"`` -> ``[0.05, 0.1]``; ``example`` is shown when ``text`` is not numbers."""
    parts = text.split(",")
    if not text.strip():
        raise InputError(f"{name} needs at least one number")
    try:
        if any(not part.strip() for part in parts):
            raise ValueError("an empty item")
        return [float(part) for part in parts]
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers, e.g. {example}; got {text!r}") from None


def ints(text: str, name: str) -> tuple[int, ...]:
    """``"1,28,28"`` -> ``(1, 28, 28)``."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{name} must be comma-separated integers, e.g. 1,28,28; got {text!r}") from None


def pair(text: str, name: str) -> tuple[float, float]:
    """``"0,1"`` -> ``(0.0, 1.0)``."""
    values = floats(text, name, example="0,1")
    if len(values) != 2:
        raise InputError(f"{name} must be two numbers 'low,high', got {text!r}")
    return values[0], values[1]


def names(text: str | None, name: str, *, example: str, otherwise: str) -> list[str] | None:
    """``"fgsm,pgd"`` -> ``["fgsm", "pgd"]``; ``None`` (the option not given) -> ``None``. ``example`` and
    ``otherwise`` (what leaving the option out does) go into the error.

    Raises:
        InputError: ``text`` names nothing (``""``, ``" , "``): an option given empty is a mistake, not a request
            for the default.
    """
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise InputError(f"{name} is empty; give comma-separated names, e.g. {name} {example}, or leave {name} out "
                         f"to {otherwise}")
    return parts
