"""Per-record validation before scoring: columnar and vectorised, with one stable reason per rejected record.

:func:`validate_records` takes decoded records (dicts, e.g. from JSON) and returns the accepted rows as
numpy columns plus one :class:`Reject` per bad record: the *first* problem found, checking the record
itself, then the spec's required fields in order (numeric inputs, then categorical), and for one field
``missing_field`` > ``wrong_type`` > ``not_finite`` > ``negative_amount``/``negative_value`` >
``unknown_category``. The stream layer dead-letters rejects with ``reason`` and ``detail``.

Reasons (short, stable codes): ``not_an_object`` (the record is not a dict), ``missing_field`` (absent or
null), ``wrong_type`` (a string or bool where a number is expected, a non-string category),
``not_finite`` (NaN or +-inf), ``negative_amount`` (the spec's amount column is negative),
``negative_value`` (another column declared non-negative is negative), ``unknown_category`` (a category
the model was not trained on, when the spec's policy is ``reject``).

How it stays fast: C-level ``itemgetter`` passes over chunks of ~1000 dicts pull the values out (a plain
``dict.get`` pass where a field is absent), a ``set`` of their types decides in one pass whether the
field is clean (only ``int``/``float``, or only ``str``), numpy does the finiteness, sign and category
checks (known categories are indexed, not converted), and only the values that fail are looked at one
by one.

>>> spec = load_spec()
>>> good = {"step": 1, "type": "PAYMENT", "amount": 9.5, "oldbalanceOrg": 10.0, "newbalanceOrig": 0.5,
...         "oldbalanceDest": 0.0, "newbalanceDest": 0.0, "transaction_id": "tx-1"}
>>> v = validate_records([good, {**good, "amount": "9.5"}, {**good, "type": "GIFT"}, [1, 2]], spec)
>>> v.accepted.tolist(), v.columns["amount"].tolist(), v.columns["transaction_id"].tolist()
([0], [9.5], ['tx-1'])
>>> [(r.position, r.reason, r.field) for r in v.rejects]
[(1, 'wrong_type', 'amount'), (2, 'unknown_category', 'type'), (3, 'not_an_object', None)]
>>> v.rejects[2].detail
'expected a JSON object, got list'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, Mapping, Sequence

import numpy as np

from breeboost.rejections import REASONS as CATALOGUE, count_reasons
from models.spec import FeatureSpec, load_spec

__all__ = ["Reject", "Validated", "validate_records", "validate_pulled", "validate_columns", "pull_columns", "REASONS"]

#: The reason codes this validator gives (entries of the catalogue :data:`breeboost.rejections.REASONS`).
REASONS = tuple(code for code, r in CATALOGUE.items() if r.stage == "validate") + ("not_an_object",)
_OK, _MISSING, _WRONG, _NOT_FINITE, _NEG_AMOUNT, _NEG_VALUE, _UNKNOWN, _NOT_OBJECT = range(8)
_CODE_REASON = (None, "missing_field", "wrong_type", "not_finite", "negative_amount", "negative_value",
                "unknown_category", "not_an_object")
_NUMBER_TYPES = frozenset((float, int))
_DICT = frozenset((dict,))
_STR = frozenset((str,))
_NUMPY_NUMBERS = (np.integer, np.floating)


@dataclass(frozen=True)
class Reject:
    """One rejected record: its position in the batch, a reason code, a readable detail, the field."""

    position: int
    reason: str
    detail: str
    field: str | None = None


@dataclass
class Validated:
    """Accepted rows as ``columns`` (numpy arrays: the spec's required fields, plus its id and event-time
    columns when the records carry them), their ``accepted`` positions, and the ``rejects``."""

    columns: dict[str, np.ndarray]
    accepted: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    n: int = 0

    def reason_counts(self) -> dict[str, int]:
        """Number of rejects per reason code."""
        return count_reasons(self.rejects)

    def missing_fields(self) -> dict[str, int]:
        """Number of ``missing_field`` rejects per field (the drift sketch counts them)."""
        out: dict[str, int] = {}
        for r in self.rejects:
            if r.reason == "missing_field" and r.field:
                out[r.field] = out.get(r.field, 0) + 1
        return out


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _numeric_field(values: Any, non_negative: bool, amount: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 values and int8 codes (``None``: every value fine) of one numeric field."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        arr = values.astype(np.float64, copy=False)
        code = None
    elif isinstance(values, np.ndarray) and values.dtype.kind != "O":
        # a whole column of bools or strings
        return np.full(len(values), np.nan), np.full(len(values), _WRONG, dtype=np.int8)
    else:
        if not isinstance(values, list):
            values = list(values)
        code = None
        arr = None
        if set(map(type, values)) <= _NUMBER_TYPES:
            try:
                arr = np.array(values, dtype=np.float64)
            except OverflowError:  # an int beyond float range: sort it out below
                arr = None
        if arr is None:
            n = len(values)
            clean = np.fromiter(map(_NUMBER_TYPES.__contains__, map(type, values)), dtype=bool, count=n)
            vals = list(values)
            code = np.zeros(n, dtype=np.int8)
            for i in np.flatnonzero(~clean).tolist():
                v = vals[i]
                if v is None:
                    code[i] = _MISSING
                elif isinstance(v, _NUMPY_NUMBERS) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
                    code[i] = _OK  # numpy scalars and int/float subclasses are numbers too
                else:
                    code[i] = _WRONG
                vals[i] = float(v) if code[i] == _OK else np.nan
            try:
                arr = np.array(vals, dtype=np.float64)
            except OverflowError:  # rare: an int too large for a float is an infinite amount
                arr = np.array([_to_float(v) for v in vals], dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        if code is None:
            code = np.zeros(arr.shape[0], dtype=np.int8)
        code[(code == _OK) & ~finite] = _NOT_FINITE
    if non_negative:
        neg = arr < 0
        if neg.any():
            if code is None:
                code = np.zeros(arr.shape[0], dtype=np.int8)
            code[(code == _OK) & neg] = _NEG_AMOUNT if amount else _NEG_VALUE
    return arr, code


def _categorical_field(values: Any, known: tuple[str, ...] | None, reject_unknown: bool
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """str values and int8 codes (``None``: every value fine) of one categorical field."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        arr, code = values, None
    elif isinstance(values, np.ndarray) and values.dtype.kind != "O":
        return values.astype(str), np.full(len(values), _WRONG, dtype=np.int8)
    else:
        if not isinstance(values, list):
            values = list(values)
        code = None
        if set(map(type, values)) <= _STR:
            if values and known is not None:
                # the usual batch: a handful of known categories; index them instead of converting each
                # string, the same array (values and dtype) as np.array(values, dtype=str)
                idx = list(map({c: i for i, c in enumerate(known)}.get, values))
                if None not in idx:
                    codes = np.array(idx, dtype=np.intp)
                    used = np.flatnonzero(np.bincount(codes, minlength=len(known))).tolist()
                    return np.array(known, dtype=f"<U{max(1, *(len(known[i]) for i in used))}")[codes], None
            arr = np.array(values, dtype=str) if values else np.empty(0, dtype="<U1")
        else:
            n = len(values)
            code = np.zeros(n, dtype=np.int8)
            vals = list(values)
            clean = np.fromiter(map(str.__instancecheck__, values), dtype=bool, count=n)
            for i in np.flatnonzero(~clean).tolist():
                code[i] = _MISSING if vals[i] is None else _WRONG
                vals[i] = ""
            arr = np.array(vals, dtype=str)
    if known is not None and reject_unknown:
        unknown = ~np.isin(arr, np.array(known, dtype=str))
        if unknown.any():
            if code is None:
                code = np.zeros(arr.shape[0], dtype=np.int8)
            code[(code == _OK) & unknown] = _UNKNOWN
    return arr, code


def _detail(code: int, name: str, value: Any, known: tuple[str, ...] | None) -> str:
    if code == _MISSING:
        return f"{name} is missing or null"
    if code == _WRONG:
        return f"{name}: expected {'a string' if known is not None else 'a number'}, got {_type_name(value)}"
    if code == _NOT_FINITE:
        return f"{name} is not a finite number ({value!r})"
    if code in (_NEG_AMOUNT, _NEG_VALUE):
        return f"{name} is negative ({value!r})"
    return f"{name} {value!r} is not one of {', '.join(known or ())}"


def _validate(get: Any, raw: Any, n: int, spec: FeatureSpec, first: np.ndarray | None,
              extra: Mapping[str, Any]) -> Validated:
    """Shared core: ``get(field)`` gives a field's values (or ``None`` if the field is absent everywhere),
    ``raw(field, i)`` one raw value (for details), ``first`` codes already set (not_an_object)."""
    status = np.zeros(n, dtype=np.int8) if first is None else first
    where = np.full(n, -1, dtype=np.int16)
    fields = spec.required_fields
    cats = spec.category_map
    non_negative = set(spec.non_negative)
    reject_unknown = spec.unknown_category == "reject"
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(fields):
        values = get(name)
        if values is None:
            arr, code = np.full(n, np.nan), np.full(n, _MISSING, dtype=np.int8)
        elif name in cats or name in spec.categorical:
            arr, code = _categorical_field(values, cats.get(name), reject_unknown)
        else:
            arr, code = _numeric_field(values, name in non_negative, name == spec.amount)
        out[name] = arr
        if code is not None:
            fresh = (status == _OK) & (code != _OK)
            status[fresh] = code[fresh]
            where[fresh] = j
    for name, values in extra.items():
        out[name] = values
    bad = np.flatnonzero(status != _OK)
    rejects = []
    for i in bad.tolist():
        c = int(status[i])
        if c == _NOT_OBJECT:
            rejects.append(Reject(i, "not_an_object", f"expected a JSON object, got {_type_name(raw(None, i))}"))
            continue
        name = fields[where[i]]
        rejects.append(Reject(i, _CODE_REASON[c], _detail(c, name, raw(name, i), cats.get(name) if name in
                                                               spec.categorical else None), name))
    if bad.size:
        accepted = np.flatnonzero(status == _OK)
        out = {k: v[accepted] for k, v in out.items()}
    else:
        accepted = np.arange(n)
    return Validated(out, accepted, rejects, n)


def _event_times(values: list) -> np.ndarray:
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:
            pass
    return np.array([float(v) if isinstance(v, (int, float, *_NUMPY_NUMBERS)) and not isinstance(v, bool)
                     else np.nan for v in values], dtype=np.float64)


_CHUNK = 1024   # records per extraction pass: their dicts stay in the CPU cache across the fields


def pull_columns(records: Sequence[Any], names: Sequence[str]) -> dict[str, list]:
    """``{name: [r.get(name) for r in records]}`` for plain dicts, one C-level ``itemgetter`` pass per field
    and chunk (a chunk whose records lack the field takes ``dict.get``: same values, ``None`` if absent)."""
    getters = [(name, itemgetter(name)) for name in dict.fromkeys(names)]
    out: dict[str, list] = {name: [] for name in names}
    for i in range(0, len(records), _CHUNK):
        part = records[i:i + _CHUNK]
        for name, g in getters:
            try:
                vals = list(map(g, part))
            except KeyError:
                vals = [r.get(name) for r in part]
            out[name] += vals
    return out


def validate_records(records: Sequence[Any], spec: FeatureSpec, pulled: Mapping[str, list] | None = None
                     ) -> Validated:
    """Validate decoded records (normally dicts) against ``spec``; see the module docstring. ``pulled``:
    fields the caller already pulled out of the records (``{name: [r.get(name) for r in records]}``,
    e.g. the id column de-duplication read), used as they are when every record is a dict."""
    n = len(records)
    first = None
    recs: Sequence[Any] = records
    types = set(map(type, records))
    if types <= _DICT:   # JSON objects, as decoded: every field pulled out in C
        names = (*spec.required_fields, *(c for c in (spec.id, spec.event_time) if c is not None))
        pulled = pulled or {}
        cols = pull_columns(records, [c for c in names if c not in pulled])
        cols.update((c, pulled[c]) for c in names if c in pulled)
        get = cols.__getitem__
    else:
        is_obj = [type(r) is dict or isinstance(r, dict) for r in records]
        if not all(is_obj):
            first = np.where(np.array(is_obj, dtype=bool), _OK, _NOT_OBJECT).astype(np.int8)
            recs = [r if ok else {} for r, ok in zip(records, is_obj)]

        def get(name: str) -> list:
            return [r.get(name) for r in recs]

    def raw(name: str | None, i: int) -> Any:
        return records[i] if name is None else recs[i].get(name)

    return _validate_fields(get, raw, n, spec, first)


def validate_pulled(columns: Mapping[str, list], spec: FeatureSpec) -> Validated:
    """Validate records already pulled apart into columns of plain values (``{name: [value of each
    record]}``, ``None`` where a record lacks the field; the spec's required fields and, when the records
    may carry them, its id and event-time columns), with the same rules and results as
    :func:`validate_records` on the records themselves. :class:`streams.decode.TypedDecoder` gives
    such columns straight from JSON.

    >>> spec = load_spec()
    >>> cols = {"step": [1, 2], "type": ["PAYMENT", "GIFT"], "amount": [9.5, 3.0], "oldbalanceOrg": [1.0, 1.0],
    ...         "newbalanceOrig": [0.0, 0.0], "oldbalanceDest": [0.0, 0.0], "newbalanceDest": [0.0, 0.0],
    ...         "transaction_id": ["tx-1", "tx-2"]}
    >>> v = validate_pulled(cols, spec)
    >>> v.accepted.tolist(), v.columns["transaction_id"].tolist(), [(r.position, r.reason) for r in v.rejects]
    ([0], ['tx-1'], [(1, 'unknown_category')])
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        from models.errors import DataError
        raise DataError(f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0

    def get(name: str) -> list:
        values = columns.get(name)
        return [None] * n if values is None else values

    def raw(name: str | None, i: int) -> Any:
        return None if name is None else get(name)[i]

    return _validate_fields(get, raw, n, spec, None)


def _validate_fields(get: Any, raw: Any, n: int, spec: FeatureSpec, first: np.ndarray | None) -> Validated:
    """:func:`_validate` with the id and event-time columns kept when the records carry them."""
    extra: dict[str, np.ndarray] = {}
    if spec.id is not None:
        ids = get(spec.id)
        if any(v is not None for v in ids):
            extra[spec.id] = np.array(ids, dtype=object)
    if spec.event_time is not None:
        times = get(spec.event_time)
        if any(v is not None for v in times):
            extra[spec.event_time] = _event_times(times)
    return _validate(get, raw, n, spec, first, extra)


def validate_columns(columns: Mapping[str, Any], spec: FeatureSpec) -> Validated:
    """Validate a table given as columns (e.g. from :func:`models.io.read_table`), with the same rules.

    Every other column of the table is kept in ``columns`` (filtered to the accepted rows).

    >>> import numpy as np
    >>> spec = load_spec()
    >>> cols = {"step": np.array([1, 2]), "type": np.array(["PAYMENT", "DEBIT"]),
    ...         "amount": np.array([5.0, -1.0]), "oldbalanceOrg": np.zeros(2), "newbalanceOrig": np.zeros(2),
    ...         "oldbalanceDest": np.zeros(2), "newbalanceDest": np.zeros(2), "isFraud": np.array([0, 1])}
    >>> v = validate_columns(cols, spec)
    >>> v.accepted.tolist(), v.columns["isFraud"].tolist(), v.rejects[0].reason, v.rejects[0].detail
    ([0], [0], 'negative_amount', 'amount is negative (-1.0)')
    """
    lengths = {len(v) for v in columns.values()}
    n = lengths.pop() if len(lengths) == 1 else 0
    if lengths:
        from models.errors import DataError
        raise DataError(f"columns have different lengths: {sorted(lengths | {n})}")
    required = set(spec.required_fields)

    def get(name: str) -> Any:
        return columns.get(name)

    def raw(name: str | None, i: int) -> Any:
        v = columns[name][i] if name is not None and name in columns else None
        return v.item() if isinstance(v, np.generic) else v

    extra = {k: (v if isinstance(v, np.ndarray) else np.asarray(v)) for k, v in columns.items() if k not in required}
    return _validate(get, raw, n, spec, None, extra)
