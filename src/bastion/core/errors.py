"""Exceptions with messages a user can act on. Every input check raises one of these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class BastionError(Exception):
    """Base class of every error bastion raises on purpose."""


class InputError(BastionError, ValueError):
    """Bad user input: a wrong shape, an out-of-range value, a malformed file. Says what to fix."""


#: A pydantic error location: field names and list indices, e.g. ``("columns", 0, "type")``.
Location = tuple[str | int, ...]


def validation_problems(error: ValidationError, *, whole: str = "the file", limit: int = 5,
                        locate: Callable[[Location], str] | None = None) -> str:
    """The first ``limit`` (default 5) problems of a pydantic ``error`` on one line, as ``field.path: message``
    joined by ``; `` (``whole`` names a problem of the document itself), then how many more there are.

    ``locate`` turns a location into the words that name it for the user (``column 'age': type`` for
    ``("columns", 0, "type")``); the default joins it with dots. A message that already starts with those words
    is not prefixed twice."""
    problems = [_problem(item, whole, locate) for item in error.errors(include_url=False)[:limit]]
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)


def _problem(item: Mapping[str, Any], whole: str, locate: Callable[[Location], str] | None) -> str:
    location = tuple(item["loc"])
    place = (locate(location) if locate is not None and location else dotted(location)) or whole
    message = str(item["msg"]).removeprefix("Value error, ")
    return message if message.startswith(f"{place}: ") else f"{place}: {message}"


def dotted(location: Location) -> str:
    """``("columns", 0, "type")`` -> ``"columns.0.type"``."""
    return ".".join(str(part) for part in location)


#: File suffixes of pickles, which bastion refuses to load (unpickling can run arbitrary code).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})


class UnsafeFileError(BastionError):
    """A file bastion refuses to load because loading it could run code (a pickle)."""


class CapabilityError(BastionError):
    """An attack needs more access to a model than the model or the threat model allows."""


class ConfigError(BastionError, ValueError):
    """An unknown suite, attack, norm or option."""


class QueryBudgetExceeded(BastionError):
    """A query would take a classifier past its query budget; it is refused before anything is sent.

    From an extraction attack's oracle it means a bug in the attack; from a remote endpoint it means
    the budget given for that endpoint is spent (raise it, or resume later from the answer journal).
    """


class RemoteError(BastionError):
    """A remote model endpoint failed: unreachable, refusing, or answering something that is no valid answer.

    Attributes:
        url: the endpoint URL the request went to (never with credentials).
        status: the last HTTP status received, ``None`` when no answer came (timeout, refused connection).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
