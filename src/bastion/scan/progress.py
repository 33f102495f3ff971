"""Progress reporting without printing: the library calls a callback, the CLI draws Rich bars."""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    """``callback(task, done, total)``: ``done`` of ``total`` units of the named task are finished."""

    def __call__(self, task: str, done: int, total: int) -> None: ...


def no_progress(task: str, done: int, total: int) -> None:
    """The default callback: does nothing."""
