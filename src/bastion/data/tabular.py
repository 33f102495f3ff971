"""CSV and Parquet tables: rows numbered from 1, validated, each with its canonical bytes and sample id.

A row's id is ``stored_sample_id(content, label)`` where ``content`` is the UTF-8 of
``json.dumps([feature values...], separators=(",", ":"), ensure_ascii=False)``: the features in schema
column order (then any columns the schema does not list, in file order), or in file order without a
schema. CSV values are the cells' text exactly as stored; Parquet values are the typed values (ints,
floats, strings, booleans, ``null``). The label is the label cell's text (stripped).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bastion.core.errors import InputError
from bastion.data.schema import TabularSchema, as_bool

if TYPE_CHECKING:
    import pandas as pd  # imported where used: it is slow to import, and image folders never need it

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})


@dataclass(frozen=True)
class Table:
    """A table as read: ``frame`` indexed by 1-based data row (CSV cells text, Parquet cells typed).

    ``values`` holds the canonical feature values per row (``feature_columns`` order) and ``labels``
    the label text per row; ``lines`` maps a CSV row to its line in the file (for messages).
    """

    source: Path
    format: Literal["csv", "parquet"]
    frame: pd.DataFrame
    label_column: str
    feature_columns: list[str]
    labels: list[str]
    values: list[list[Any]]
    lines: dict[int, int] = field(default_factory=dict)

    @property
    def rows(self) -> list[int]:
        """1-based data row numbers, in file order."""
        return [int(r) for r in self.frame.index]

    def where(self, row: int) -> str:
        """``line L (data row R)`` for CSV, ``row R`` for Parquet: for error messages."""
        return f"line {self.lines[row]} (data row {row})" if row in self.lines else f"row {row}"

    def contents(self) -> list[bytes]:
        """Canonical bytes of each row's features: what its sample id hashes."""
        return [json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
                for v in self.values]


def row_hashes(table: Table) -> list[tuple[str, str, int]]:
    """``(id, content digest, content size)`` per row; the id is ``stored_sample_id(content, label)``."""
    out = []
    for content, label in zip(table.contents(), table.labels, strict=True):
        digest = hashlib.sha256(content)
        content_digest = digest.hexdigest()
        digest.update(b"\x00label=" + label.encode("utf-8"))
        out.append((digest.hexdigest(), content_digest, len(content)))
    return out


def read_table(path: Path, *, label_column: str | None = None, schema: TabularSchema | None = None) -> Table:
    """Read a ``.csv`` or ``.parquet`` file, check it against ``schema`` (when given) and its labels.

    ``label_column``: default the schema's label, else ``"label"``.

    Raises:
        InputError: an unreadable file, a missing label column, an empty label, a row with the wrong
            number of cells. SchemaViolationError: rows that break ``schema`` (every one is listed).
    """
    path = Path(path)
    label = _label_column(label_column, schema)
    if path.suffix.lower() == ".csv":
        frame, lines, values_of = _read_csv(path)
        kind: Literal["csv", "parquet"] = "csv"
    else:
        frame, lines, values_of = _read_parquet(path)
        kind = "parquet"
    header = [str(c) for c in frame.columns]
    if label not in header:
        raise InputError(f"{path} has no column {label!r}; columns are {', '.join(header)}. "
                         "Name the label column with --label-column")
    if schema is not None:
        schema.validate_frame(frame, source=str(path))
    features = schema.feature_columns(header) if schema is not None else [c for c in header if c != label]
    if not features:
        raise InputError(f"{path} has only the label column; add feature columns")
    labels = [_label_text(v) for v in frame[label].tolist()]
    table = Table(source=path, format=kind, frame=frame, label_column=label, feature_columns=features,
                  labels=labels, values=values_of(features), lines=lines)
    empty = next((row for row, text in zip(table.rows, labels, strict=True) if not text), None)
    if empty is not None:
        raise InputError(f"{path}, {table.where(empty)}, column {label!r}: the label is empty")
    return table


def feature_matrix(table: Table, schema: TabularSchema | None) -> np.ndarray:
    """``(N, D)`` float64 features. Without a schema every feature must be a number; with one, ``bool``
    columns become 0/1 and ``category`` columns the index of the value in ``categories``.

    Raises:
        InputError: a text cell that is not a number (names its row and column), a ``string`` column, or a
            ``category`` column without its list of categories.
    """
    columns = [_feature_column(table, name, schema.column(name) if schema else None)
               for name in table.feature_columns]
    return np.stack(columns, axis=1) if columns else np.zeros((len(table.labels), 0))


def _feature_column(table: Table, name: str, spec: Any) -> np.ndarray:
    series = table.frame[name]
    if spec is not None and spec.type == "string":
        raise InputError(f"{table.source}: column {name!r} is a string column and cannot be a model input; "
                         "drop it, or declare it a category with its categories")
    if spec is not None and spec.type == "category":
        if spec.categories is None:
            raise InputError(f"{table.source}: category column {name!r} needs its list of categories to be "
                             "encoded as a model input")
        index = {c: float(i) for i, c in enumerate(spec.categories)}
        return np.array([np.nan if _label_text(v) == "" else index[_label_text(v)] for v in series], dtype=float)
    if spec is not None and spec.type == "bool":
        return np.array([np.nan if _label_text(v) == "" else float(as_bool(v)) for v in series], dtype=float)
    out = np.empty(len(series), dtype=float)
    for i, (row, value) in enumerate(series.items()):
        out[i] = _number(value, table, int(row), name)
    return out


def _number(value: Any, table: Table, row: int, column: str) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{table.source}, {table.where(row)}, column {column!r}: {value!r} is not a number; "
                         "feature columns must be numeric (or declare the column's type in a schema)") from None


def _label_column(label_column: str | None, schema: TabularSchema | None) -> str:
    if schema is not None and label_column is not None and label_column != schema.label:
        raise InputError(f"the label column is {label_column!r} but the schema says {schema.label!r}; "
                         "give one of them")
    return label_column or (schema.label if schema is not None else "label")


def _label_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def _read_csv(path: Path) -> tuple[pd.DataFrame, dict[int, int], Any]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a byte-order mark (Excel) is not a name
            reader = csv.reader(handle)
            header_row = next(reader, None)
            if header_row is None:
                raise InputError(f"{path} is empty; it needs a header row and one row per sample")
            header = [cell.strip() for cell in header_row]
            _check_header(header, path)
            records, rows, lines = [], [], {}
            for number, record in enumerate(reader, start=1):
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise InputError(f"{path}, line {reader.line_num} (data row {number}): {len(record)} cells, "
                                     f"the header has {len(header)}")
                records.append(record)
                rows.append(number)
                lines[number] = reader.line_num
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable UTF-8 CSV file: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    import pandas as pd

    frame = pd.DataFrame(records, columns=header, index=pd.Index(rows, name="row"), dtype=object)
    if not len(frame):
        raise InputError(f"{path} has a header but no data rows")
    at = {name: i for i, name in enumerate(header)}

    def values_of(features: list[str]) -> list[list[Any]]:
        positions = [at[name] for name in features]
        return [[record[i] for i in positions] for record in records]

    return frame, lines, values_of


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[int, int], Any]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    header = [str(name) for name in table.column_names]
    _check_header(header, path)
    if table.num_rows == 0:
        raise InputError(f"{path} has no rows")
    frame = table.to_pandas()
    frame.index = pd.Index(range(1, table.num_rows + 1), name="row")

    def values_of(features: list[str]) -> list[list[Any]]:
        columns = [table.column(name).to_pylist() for name in features]
        return [list(values) for values in zip(*columns, strict=True)]

    return frame, {}, values_of


def _check_header(header: list[str], path: Path) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: column name(s) {', '.join(repeated)} appear more than once; rename them")
    if any(not name for name in header):
        raise InputError(f"{path}: the header has an empty column name; name every column")
