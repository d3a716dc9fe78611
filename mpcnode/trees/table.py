"""A querier's tables (docs/prediction.md, "The querier's client"): queries in, predictions out,
CSV (with a header row) or Parquet, told by the file's extension, read and written with pyarrow
(imported here only, so `mpcnode` imports without it).

Queries: the model's features as named columns, in any order, one row per query; a cell is a
number (integers and decimals, `inf`, `-inf`, `Infinity`), or missing: empty, `nan`, `NaN`, or
null in Parquet. Columns the caller asks to carry (an id column) go through to the output
unchanged; any other column is refused, so a misspelt feature is not silently read as missing.
Errors are one line naming the file, the column and, for a bad cell, its row (1 = the first data
row), never the cell's value: the line may end up in logs others read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


class TableError(ValueError):
    """A query or score table Parley cannot use; one line naming the file and the column."""


@dataclass(frozen=True)
class QueryTable:
    x: np.ndarray                       # (queries, features) float64 in the model's feature order; NaN = missing
    carried: dict[str, np.ndarray]      # the carried columns, in the order asked


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError("query and score tables need pyarrow (installed with the `ml` extra: "
                         "pip install -e '.[ml]')") from None
    return pa, pc, pacsv, pq


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "CSV"
    if suffix in PARQUET_SUFFIXES:
        return "Parquet"
    raise TableError(f"{path}: unknown table format {suffix or '(no extension)'!r} (use .csv, .parquet or .pq)")


def read_queries(path: Path | str, feature_names: Sequence[str], carry: Sequence[str] = ()) -> QueryTable:
    """The rows of `path` as queries for a model with these features (module docstring)."""
    path = Path(path)
    kind = _kind(path)
    pa, pc, pacsv, pq = _arrow()
    try:
        if kind == "CSV":
            # every cell read as text, so that a number's form ("1e-36", "inf") is ours to parse
            names = _csv_header(pacsv, path)
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False))
        else:
            # pyarrow refuses to read a table whose names repeat; the schema alone shows which
            _refuse_repeats(path, pq.read_schema(path).names)
            table = pq.read_table(path)
    except TableError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        # the library's message may quote a cell: only its kind is shown
        raise TableError(f"{path}: cannot be read as {kind} ({type(exc).__name__})") from None
    columns = list(table.column_names)
    _refuse_repeats(path, columns)
    seen = set(columns)
    features = list(feature_names)
    for c in columns:
        if c not in features and c not in carry:
            raise TableError(f"{path}: column {c!r} is not a feature of the model (nor carried)")
    for c in [*features, *carry]:
        if c not in seen:
            what = "feature" if c in features else "carried"
            raise TableError(f"{path}: {what} column {c!r} is missing")
    if table.num_rows == 0:
        raise TableError(f"{path}: no rows")
    x = np.empty((table.num_rows, len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        x[:, j] = _numbers(pa, pc, path, name, table.column(name))
    carried = {c: table.column(c).to_numpy(zero_copy_only=False) for c in carry}
    return QueryTable(x, carried)


def _refuse_repeats(path: Path, columns: Sequence[str]) -> None:
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise TableError(f"{path}: column {c!r} appears twice")
        seen.add(c)


def _csv_header(pacsv, path: Path) -> list[str]:
    """The column names of a CSV file (its first row)."""
    reader = pacsv.open_csv(path)
    try:
        return list(reader.schema.names)
    finally:
        reader.close()


def _numbers(pa, pc, path: Path, name: str, column) -> np.ndarray:
    """One column as float64, missing cells as NaN; TableError naming the first bad row."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t):
        return column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise TableError(f"{path}: column {name!r} holds {t}, not numbers")
    text = pc.utf8_trim_whitespace(column)
    missing = pc.or_(pc.equal(text, ""), pc.is_null(text))
    text = pc.if_else(missing, "nan", text)
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    # error path: halve the failing range with pyarrow's own cast (Python's float() accepts cells
    # such as "1_0" that pyarrow refuses); n + n/2 + ... cells cast in all
    lo, hi = 0, len(text)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(text.slice(lo, mid - lo), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    raise TableError(f"{path}: column {name!r}, row {lo + 1}: not a number")


def write_scores(path: Path | str, columns: dict[str, np.ndarray]) -> None:
    """Write the columns (equal lengths) as CSV (floats in shortest round-trip form) or Parquet."""
    path = Path(path)
    kind = _kind(path)
    pa, _, pacsv, pq = _arrow()
    lengths = {len(np.asarray(values)) for values in columns.values()}
    if not columns or len(lengths) != 1:
        # a caller's bug, but refused before a file with ragged or no columns is left behind
        raise TableError(f"{path}: score columns must be one or more of equal length")
    table = pa.table({name: pa.array(np.asarray(values).tolist()) for name, values in columns.items()})
    try:
        if kind == "CSV":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
    except OSError as exc:
        raise TableError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__})") from None
