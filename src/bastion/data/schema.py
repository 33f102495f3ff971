"""Tabular schemas: column types, ranges and allowed categories, checked row by row with clear errors.

A schema is a YAML or JSON file::

    label: species                  # the label column (default "label")
    allow_extra_columns: false      # columns not listed here are an error (default)
    columns:
      - {name: sepal_length, type: float, min: 0, max: 10}
      - {name: petals, type: int, min: 0, nullable: true}
      - {name: colour, type: category, categories: [red, blue]}
      - {name: species, type: category, categories: [setosa, versicolor, virginica]}

``columns`` may also be a mapping from name to spec (``sepal_length: {type: float}``). Types: ``int``
(whole numbers), ``float`` (finite numbers), ``category`` (one of ``categories``, or any text when no list
is given), ``string`` (any text) and ``bool`` (true/false, yes/no, 1/0). ``min``/``max`` bound int and
float columns, inclusive. A missing value (an empty CSV cell, a Parquet null) is an error unless the
column is ``nullable``. :meth:`TabularSchema.validate_frame` reports every bad row at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.core.errors import InputError, Location, dotted, validation_problems

if TYPE_CHECKING:
    import pandas as pd  # imported where used: it is slow to import, and image folders never need it

ColumnType = Literal["int", "float", "category", "string", "bool"]

#: How many problems a :class:`SchemaViolationError` message lists before "and N more".
SHOWN_PROBLEMS = 20
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


class ColumnSpec(BaseModel):
    """One column: its ``type``, an inclusive ``min``/``max`` (numbers), ``categories``, ``nullable``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: ColumnType
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool = False

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_as_text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        numeric = self.type in ("int", "float")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"column {self.name!r}: min/max apply to int and float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min:g} is above max {self.max:g}")
        if self.categories is not None and self.type != "category":
            raise ValueError(f"column {self.name!r}: categories apply to category columns, not {self.type}")
        if self.categories is not None and not self.categories:
            raise ValueError(f"column {self.name!r}: categories is empty; list the allowed values or drop it")
        return self


@dataclass(frozen=True)
class RowProblem:
    """One bad cell: ``row`` is the 1-based data row (the header is not a row), ``value`` as text."""

    row: int
    column: str
    value: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.value!r} {self.problem}"


class SchemaViolationError(InputError):
    """Rows that break a schema. ``problems`` holds every one; the message shows the first 20."""

    def __init__(self, source: str, problems: list[RowProblem]) -> None:
        self.source = source
        self.problems = problems
        rows = len({p.row for p in problems})
        lines = [f"  {p}" for p in problems[:SHOWN_PROBLEMS]]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more problem(s)")
        super().__init__(f"{source}: {len(problems)} problem(s) in {rows} row(s) do not match the schema; "
                         "fix the data or the schema:\n" + "\n".join(lines))


class TabularSchema(BaseModel):
    """The expected columns of a CSV/Parquet dataset and its ``label`` column (default ``"label"``)."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec] = Field(min_length=1)
    label: str = "label"
    allow_extra_columns: bool = False

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_from_mapping(cls, value: Any) -> Any:
        return columns_as_list(value)

    @model_validator(mode="after")
    def _unique_names(self) -> TabularSchema:
        names = [c.name for c in self.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"columns listed twice: {', '.join(repeated)}")
        return self

    def column(self, name: str) -> ColumnSpec | None:
        """The spec of column ``name``, or ``None`` when the schema does not list it."""
        return next((c for c in self.columns if c.name == name), None)

    def feature_columns(self, present: list[str]) -> list[str]:
        """Feature columns in schema order, then columns the schema does not list (file order)."""
        listed = [c.name for c in self.columns if c.name != self.label]
        return listed + [n for n in present if n != self.label and n not in listed]

    def validate_frame(self, frame: pd.DataFrame, *, source: str = "data") -> None:
        """Check every cell of ``frame`` (index: 1-based row numbers; text or typed cells).

        Raises:
            InputError: a column is missing, or there are columns the schema does not allow.
            SchemaViolationError: bad cells; it carries every :class:`RowProblem`, sorted by row.
        """
        present = [str(c) for c in frame.columns]
        missing = [c.name for c in self.columns if c.name not in present]
        if self.label not in present and self.label not in missing:
            missing.append(self.label)
        if missing:
            raise InputError(f"{source} lacks column(s) {', '.join(missing)} required by the schema; "
                             f"its columns are {', '.join(present)}")
        extra = [n for n in present if self.column(n) is None and n != self.label]
        if extra and not self.allow_extra_columns:
            raise InputError(f"{source} has column(s) {', '.join(extra)} that the schema does not list; add "
                             "them to the schema or set allow_extra_columns: true")
        order = {name: i for i, name in enumerate(present)}
        problems: list[RowProblem] = []
        for name in present:
            spec = self.column(name)
            if spec is None and name == self.label:
                spec = ColumnSpec(name=name, type="string")
            if spec is not None:
                problems.extend(_column_problems(frame[name], spec))
        if problems:
            problems.sort(key=lambda p: (p.row, order[p.column]))
            raise SchemaViolationError(source, problems)


def load_schema(path: Path) -> TabularSchema:
    """Read a schema from a ``.json`` file or a YAML file (``.yaml``, ``.yml`` or anything else).

    Raises:
        InputError: a missing or unparsable file, or a schema that is not valid (says which field).
    """
    import yaml

    from bastion.core.yamlio import load_yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"schema file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path} is not a readable schema ({'JSON' if path.suffix == '.json' else 'YAML'}): "
                         f"{exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a schema is a mapping with 'columns' (and optional 'label'), got "
                         f"{type(data).__name__}")
    try:
        return TabularSchema.model_validate(data)
    except ValidationError as exc:
        details = validation_problems(exc, whole="schema", limit=SHOWN_PROBLEMS,
                                      locate=_column_locator(data.get("columns")))
        raise InputError(f"{path} is not a valid schema: {details}") from exc


def _column_locator(columns: object) -> Callable[[Location], str]:
    """Names a problem in the ``columns`` list by its column: ``("columns", 0, "type")`` becomes
    ``column 'age': type`` (``column #1: ...`` for an entry without a usable name), so the user finds it."""
    names = _column_names(columns)

    def locate(location: Location) -> str:
        if len(location) < 2 or location[0] != "columns" or not isinstance(location[1], int):
            return dotted(location)
        index = location[1]
        name = names[index] if index < len(names) else None
        column = f"column {name!r}" if name is not None else f"column #{index + 1}"
        rest = dotted(location[2:])
        return f"{column}: {rest}" if rest else column

    return locate


def columns_as_list(columns: Any) -> Any:
    """A schema's raw ``columns`` as the list :class:`TabularSchema` validates: a mapping from name to spec
    becomes a list of specs with their names (a spec that is not a mapping is left for validation to refuse);
    anything else is returned as it is."""
    if isinstance(columns, dict):
        return [{"name": name, **(spec or {})} if isinstance(spec, dict | None) else spec
                for name, spec in columns.items()]
    return columns


def _column_names(columns: object) -> list[str | None]:
    """The name of each entry of a schema's raw ``columns`` (a list, or a mapping from name to spec, in the order
    :class:`TabularSchema` validates them); ``None`` where an entry has no text name."""
    entries = columns_as_list(columns)
    if not isinstance(entries, list):
        return []
    keys = list(columns) if isinstance(columns, dict) else [None] * len(entries)  # a mapping's names, bad specs too
    names = [entry.get("name") if isinstance(entry, dict) else key for entry, key in zip(entries, keys, strict=True)]
    return [name if isinstance(name, str) and name else None for name in names]


# --- per-column checks ------------------------------------------------------------------------


def _column_problems(column: pd.Series, spec: ColumnSpec) -> list[RowProblem]:
    text = column.map(_as_text)
    null = column.isna() | (text.str.strip() == "")
    problems = [] if spec.nullable else _problems(column, null, spec, "is missing (the column is not nullable)")
    present = column[~null]
    if spec.type in ("int", "float"):
        problems += _numeric_problems(present, spec)
    elif spec.type == "bool":
        ok = present.map(_is_bool)
        problems += _problems(present, ~ok, spec, "is not a boolean (true/false, yes/no, 1/0)")
    elif spec.type == "category" and spec.categories is not None:
        allowed = set(spec.categories)
        bad = ~present.map(lambda v: _as_text(v).strip() in allowed).astype(bool)
        shown = ", ".join(spec.categories[:10]) + (", ..." if len(spec.categories) > 10 else "")
        problems += _problems(present, bad, spec, f"is not an allowed category ({shown})")
    return problems


def _numeric_problems(values: pd.Series, spec: ColumnSpec) -> list[RowProblem]:
    import pandas as pd

    is_bool = values.map(lambda v: isinstance(v, bool | np.bool_)).astype(bool)
    stripped = values.map(lambda v: v.strip() if isinstance(v, str) else v)
    numbers = pd.to_numeric(stripped.where(~is_bool), errors="coerce").astype(float)
    unparsed = numbers.isna()
    problems = _problems(values, unparsed, spec, "is not a number")
    infinite = ~unparsed & ~np.isfinite(numbers)
    problems += _problems(values, infinite, spec, "is not a finite number")
    finite = numbers[~unparsed & ~infinite]
    if spec.type == "int":
        problems += _problems(values, finite != np.floor(finite), spec, "is not a whole number")
    if spec.min is not None:
        problems += _problems(values, finite < spec.min, spec, f"is below the minimum {spec.min:g}")
    if spec.max is not None:
        problems += _problems(values, finite > spec.max, spec, f"is above the maximum {spec.max:g}")
    return problems


def _problems(values: pd.Series, bad: pd.Series, spec: ColumnSpec, problem: str) -> list[RowProblem]:
    rows = bad[bad].index
    return [RowProblem(row=int(row), column=spec.name, value=_as_text(values.loc[row]), problem=problem)
            for row in rows]


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def _is_bool(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    if isinstance(value, int | np.integer):
        return int(value) in (0, 1)
    return _as_text(value).strip().lower() in TRUE_WORDS | FALSE_WORDS


def as_bool(value: Any) -> bool:
    """A validated ``bool`` cell as ``True``/``False``."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return bool(value)
    return _as_text(value).strip().lower() in TRUE_WORDS
