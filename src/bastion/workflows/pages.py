"""Writing a workflow's evidence: the canonical JSON record and its self-contained HTML page."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from pydantic import BaseModel

from bastion.scan.report._common import write_text_atomically
from bastion.scan.report.html import report_environment
from bastion.scan.report.writer import prepare_folder


@lru_cache(maxsize=1)
def workflow_environment() -> Environment:
    """The jinja2 environment of ``bastion/workflows/templates``."""
    return report_environment("bastion.workflows")


def write_record_and_page(
    record: BaseModel,
    out_dir: str | Path,
    name: str,
    context: Callable[[Path], dict[str, Any]],
    *,
    indent: int | None = 2,
) -> dict[str, Path]:
    """Write ``<name>.json`` (the record) and ``<name>.html`` (template ``<name>.html``) into ``out_dir``.

    ``context(folder)`` gives the template's variables. Both files are written atomically; returns
    their paths keyed ``json`` and ``html``.
    """
    folder = prepare_folder(out_dir)
    paths = {"json": folder / f"{name}.json", "html": folder / f"{name}.html"}
    write_text_atomically(paths["json"], record.model_dump_json(indent=indent))
    html = workflow_environment().get_template(f"{name}.html").render(**context(folder))
    write_text_atomically(paths["html"], html)
    return paths
