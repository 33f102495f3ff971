"""Terminal output for the CLI: Rich progress bars and error handling. Library code never prints."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from bastion.core.errors import BastionError

console = Console()
errors = Console(stderr=True)


@contextmanager
def progress_bars() -> Iterator[object]:
    """Yields a ``progress(task, done, total)`` callback that draws one Rich bar per task name."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=False, disable=not errors.is_terminal) as bars:
        tasks: dict[str, int] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bars.add_task(task, total=total)
            bars.update(tasks[task], completed=done, total=total)

        yield update


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn bastion's own errors, invalid settings and unusable paths (``OSError``) into a one-line message and exit
    code 2."""
    try:
        yield
    except BastionError as error:
        _print_error(str(error))
        raise typer.Exit(2) from None
    except ValidationError as error:
        _print_error("; ".join(_validation_problem(e, error.title) for e in error.errors()))
        raise typer.Exit(2) from None
    except OSError as error:  # a path the user gave that cannot be read or written (missing folder, no permission)
        where = f": {error.filename}" if error.filename else ""
        _print_error(f"{error.strerror or error}{where}; check the path and its permissions")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


def _print_error(message: str) -> None:
    """``error: message`` on standard error; the message as plain text (a path or a factory name such as
    ``pkg:five`` is not read as rich markup or an emoji code), unprintable characters escaped."""
    plain = "\n".join(printable(line) for line in message.split("\n"))
    errors.print(Text.assemble(("error:", "bold red"), " ", plain), highlight=False, soft_wrap=True)


#: Settings models read from environment variables, by their prefix: their errors name the variable (the fields
#: that options also set take any string, so only the variables' values can fail to validate).
_ENVIRONMENT_SETTINGS = {"GatewaySettings": "BASTION_"}


def _validation_problem(error: dict, model: str = "") -> str:
    """One pydantic error as ``--field: message`` (``BASTION_FIELD: message`` for settings read from the
    environment), or the message alone for a check of the whole model."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message
    field = ".".join(map(str, error["loc"]))
    prefix = _ENVIRONMENT_SETTINGS.get(model)
    return f"{prefix}{field.upper()}: {message}" if prefix is not None else f"--{field}: {message}"


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``, ``\\u200b``): for names and
    text that come from untrusted files or prompts, so they cannot drive the terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
