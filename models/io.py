"""Read and write tables (CSV, JSON lines, Parquet) as a dict of numpy columns.

Column types are inferred per column: all numbers give ``int64`` or ``float64`` arrays, all strings give a
``str`` array, and anything mixed (a number column with an empty cell or a stray string, JSON nulls) gives
an ``object`` array that keeps ``None`` for missing values and the odd value as it is, so validation can
reject exactly those rows with ``missing_field`` or ``wrong_type``. Parquet needs ``pyarrow`` (the
``parquet`` extra).

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> path = os.path.join(d, "t.csv")
>>> _ = open(path, "w").write("id,amount,type,isFraud\\na,1.5,X,0\\nb,,Y,1\\nc,abc,X,0\\n")
>>> t = read_table(path)
>>> t["id"].tolist(), t["amount"].tolist(), t["isFraud"].dtype.name
(['a', 'b', 'c'], [1.5, None, 'abc'], 'int64')
>>> write_table({"x": [1.0, None], "y": ["u", "v"]}, os.path.join(d, "o.jsonl"))
>>> open(os.path.join(d, "o.jsonl")).read()
'{"x":1.0,"y":"u"}\\n{"x":null,"y":"v"}\\n'
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import orjson

from models.errors import DataError

__all__ = ["read_table", "write_table", "records_to_columns", "FORMATS"]

FORMATS = (".csv", ".jsonl", ".parquet")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json" or suffix == ".ndjson":
        suffix = ".jsonl"
    if suffix not in FORMATS:
        raise DataError(f"{str(path)!r}: unknown table format {path.suffix!r} (use {', '.join(FORMATS)})")
    return suffix


def _is_number(v: Any) -> bool:
    return (type(v) is float or type(v) is int) or (isinstance(v, (int, float, np.integer, np.floating))
                                                   and not isinstance(v, (bool, np.bool_)))


def _infer_values(values: list) -> np.ndarray:
    """Typed array of decoded values (JSON, Parquet with nulls)."""
    types = set(map(type, values))
    if types <= {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=object)
    if types <= {int, float}:
        return np.array(values, dtype=np.float64)
    if types <= {str} and values:
        return np.array(values, dtype=str)
    return np.array(values, dtype=object)


def _parse_number(s: str) -> Any:
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _infer_strings(values: list[str]) -> np.ndarray:
    """Typed array of CSV cells: numbers when the column is numeric, ``None`` for empty cells."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    parsed = [None if s == "" else _parse_number(s) for s in values]
    non_empty = [v for v in parsed if v is not None]
    numbers = sum(1 for v in non_empty if not isinstance(v, str))
    if non_empty and numbers * 2 >= len(non_empty):
        return np.array(parsed, dtype=object)  # a numeric column with holes or stray strings
    if len(non_empty) == len(parsed):
        return np.array(values, dtype=str)
    return np.array([None if s == "" else s for s in values], dtype=object)


def records_to_columns(records: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Columns of a list of dicts: every key seen, ``None`` where a record lacks it."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    return {k: _infer_values([r.get(k) for r in records]) for k in keys}


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{str(path)!r}: the CSV file is empty (no header row)") from None
        rows = list(reader)
    if len(set(header)) != len(header):
        raise DataError(f"{str(path)!r}: duplicate column names in the header")
    short = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if short is not None:
        raise DataError(f"{str(path)!r}: line {short + 2} has {len(rows[short])} cells, the header {len(header)}")
    if not rows:
        return {h: np.empty(0, dtype=np.float64) for h in header}
    return {h: _infer_strings(list(col)) for h, col in zip(header, zip(*rows))}


def _read_jsonl(path: Path) -> dict[str, np.ndarray]:
    records = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DataError(f"{str(path)!r}: line {lineno} is not valid JSON ({e})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{str(path)!r}: line {lineno} is not a JSON object")
            records.append(rec)
    return records_to_columns(records)


def _pyarrow(what: str) -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{what} needs pyarrow: pip install 'breeboost[parquet]'") from None
    return pq


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    pq = _pyarrow("reading Parquet")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several error types for a bad file
        raise DataError(f"{str(path)!r}: cannot read Parquet: {e}") from None
    out = {}
    for name, col in zip(table.column_names, table.columns):
        if col.null_count:
            out[name] = _infer_values(col.to_pylist())
        else:
            arr = col.to_numpy(zero_copy_only=False)
            out[name] = arr.astype(str) if arr.dtype == object else arr
    return out


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a ``.csv``, ``.jsonl`` (also ``.json``/``.ndjson``: one object per line) or ``.parquet`` file."""
    p = Path(path)
    fmt = _format(p)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist")
    return {".csv": _read_csv, ".jsonl": _read_jsonl, ".parquet": _read_parquet}[fmt](p)


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return v


def write_table(columns: Mapping[str, Any], path: str | Path) -> None:
    """Write columns to ``.csv``, ``.jsonl`` or ``.parquet`` (``None``/NaN: empty cell or JSON null)."""
    p = Path(path)
    fmt = _format(p)
    names = list(columns)
    lists = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns.values()]
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".csv":
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(names)
            w.writerows([_cell(v) for v in row] for row in zip(*lists))
    elif fmt == ".jsonl":
        with p.open("wb") as fh:
            for row in zip(*lists):
                fh.write(orjson.dumps(dict(zip(names, row))) + b"\n")
    else:
        _pyarrow("writing Parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({n: pa.array(v) for n, v in zip(names, lists)}), p)
