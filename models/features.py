"""Feature engineering shared by training, evaluation and serving: one code path, vectorised over batches.

:func:`compute_features` turns columns (a dict of equally long arrays or lists) into the model's
features as the spec declares them; :func:`features_for_record` runs the very same code on a one-row
batch, so a transaction scored alone gets exactly the features it gets inside a batch.

>>> import numpy as np
>>> spec = load_spec()
>>> cols = {"step": np.array([1, 30]), "type": np.array(["TRANSFER", "PAYMENT"]),
...         "amount": np.array([250000.0, 10.0]), "oldbalanceOrg": np.array([250000.0, 0.0]),
...         "newbalanceOrig": np.array([0.0, 0.0]), "oldbalanceDest": np.array([0.0, 5.0]),
...         "newbalanceDest": np.array([0.0, 15.0])}
>>> f = compute_features(cols, spec)
>>> f.numeric["errorBalanceOrig"], f.numeric["errorBalanceDest"]
(array([ 0., 10.]), array([250000.,      0.]))
>>> f.numeric["hour"], f.numeric["day"], f.numeric["is_large_transaction"]
(array([0., 5.]), array([0., 1.]), array([1., 0.]))
>>> f.matrix().shape, f.matrix().dtype, f.matrix()[0, -5:].tolist()
((2, 20), dtype('float32'), [0.0, 0.0, 0.0, 0.0, 1.0])
>>> rec = {k: v[1].item() for k, v in cols.items()}
>>> bool((features_for_record(rec, spec).matrix()[0] == f.matrix()[1]).all())
True
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from models.errors import DataError
from models.spec import FeatureSpec, load_spec

__all__ = ["Features", "compute_features", "features_for_record", "numeric_column"]


class Features:
    """Features of one batch: ``numeric`` (float64 per numeric/derived feature), ``categorical`` (str
    arrays) and :meth:`matrix` (float32, model feature order, categorical features one-hot)."""

    def __init__(self, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], spec: FeatureSpec) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.spec = spec
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        for v in (*self.numeric.values(), *self.categorical.values()):
            return int(v.shape[0])
        return 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.spec.feature_names

    def matrix(self) -> np.ndarray:
        """The float32 model input (C order, computed once). Unknown categories one-hot to all zeros."""
        if self._matrix is None:
            names = self.spec.feature_names
            n = len(self)
            m = np.zeros((n, len(names)), dtype=np.float32)
            j = 0
            for name in self.spec.numeric_features:
                m[:, j] = self.numeric[name]
                j += 1
            cats = self.spec.category_map
            for col in self.spec.categorical:
                values = self.categorical[col]
                for cat in cats[col]:
                    m[:, j] = values == cat
                    j += 1
            self._matrix = m
        return self._matrix

    def take(self, positions: np.ndarray) -> "Features":
        """The features of the rows at ``positions`` (a new object; the matrix is sliced if already built)."""
        out = Features({k: v[positions] for k, v in self.numeric.items()},
                       {k: v[positions] for k, v in self.categorical.items()}, self.spec)
        if self._matrix is not None:
            out._matrix = np.ascontiguousarray(self._matrix[positions])
        return out


def numeric_column(columns: Mapping[str, Any], name: str) -> np.ndarray:
    """Column ``name`` as float64; :class:`DataError` if it is absent or not numeric."""
    if name not in columns:
        raise DataError(f"column {name!r} is missing")
    raw = columns[name]
    arr = raw if isinstance(raw, np.ndarray) else np.asarray(raw, dtype=object)
    if arr.dtype.kind in "fiu":
        return arr.astype(np.float64, copy=False)
    try:
        out = np.asarray(arr, dtype=np.float64) if arr.dtype.kind != "b" else arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"column {name!r} is not numeric (dtype {arr.dtype}); validate the rows first") from None
    return out


def compute_features(columns: Mapping[str, Any], spec: FeatureSpec) -> Features:
    """Features of a batch of rows given as columns (numpy arrays or lists, equal lengths)."""
    env: dict[str, np.ndarray] = {name: numeric_column(columns, name) for name in spec.numeric_inputs}
    constants = dict(spec.constants)
    for name, expr in spec.expressions:
        v = expr.evaluate(env, constants)
        # a division by zero in a user's expression becomes a missing value, never an inf in the model
        v[~np.isfinite(v)] = np.nan
        env[name] = v
    numeric = {name: env[name] for name in spec.numeric_features}
    categorical: dict[str, np.ndarray] = {}
    for col in spec.categorical:
        if col not in columns:
            raise DataError(f"column {col!r} is missing")
        arr = np.asarray(columns[col])
        categorical[col] = arr if arr.dtype.kind == "U" else arr.astype(str)
    lengths = {int(v.shape[0]) for v in (*numeric.values(), *categorical.values())}
    if len(lengths) > 1:
        raise DataError(f"columns have different lengths: {sorted(lengths)}")
    return Features(numeric, categorical, spec)


def features_for_record(record: Mapping[str, Any], spec: FeatureSpec) -> Features:
    """Features of one record (a dict), computed by :func:`compute_features` on a one-row batch."""
    return compute_features({f: [record.get(f)] for f in spec.required_fields}, spec)
