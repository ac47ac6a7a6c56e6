"""Reason codes and attribution: exact TreeSHAP contributions of the model's features, one code path.

XGBoost's ``pred_contribs`` gives, per row, each feature's exact (path-dependent TreeSHAP) contribution in
log-odds, and a bias column (``base_value``: the margin of a row the trees know nothing about): they add up
to the row's margin, ``logit(fraud_probability)``. ``inplace_predict`` has no contributions, so
:meth:`Explainer.contributions` builds one ``DMatrix`` of the rows to explain and makes one call: ~77 µs a
row (363 trees of depth 6, one thread) plus ~0.4 ms a call, which is why the stream explains only the rows
it must (:func:`select_rows`) and a bounded sample of each window (:class:`EventSample`).

* :meth:`Explainer.reasons`: the top ``k`` features of each row by contribution (largest first, ties to the
  feature listed first in the spec), with the feature's value: what the scoring stage writes into flagged
  score records, ``breeboost score --explain`` into its ``reasons`` column and ``breeboost explain`` prints.
* :meth:`Explainer.grouped`: contributions per input feature (a categorical column's one-hot features
  summed, which SHAP's additivity allows): the attribution of drift windows and of the training reference
  (:func:`reference_attribution`, stored in the model's profile).
* :class:`EventSample`: the ``size`` events of a window with the smallest hash of their position
  (partition, offset, envelope item), whatever the micro-batches: a uniform, deterministic, bounded sample.

>>> import tempfile
>>> from models.scorer import Scorer
>>> from models.spec import parse_spec
>>> from models.training import TrainConfig, train_model
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(3000, 2))
>>> cols = {"v1": x[:, 0], "v2": x[:, 1], "y": (x[:, 0] + 0.2 * rng.normal(size=3000) > 1.5).astype(int)}
>>> d = tempfile.mkdtemp()
>>> _ = train_model(cols, parse_spec('label = "y"\\n[features]\\nnumeric = ["v1", "v2"]'),
...                 TrainConfig(n_estimators=20)).save(d)
>>> scorer = Scorer.load(d)
>>> explainer = Explainer.of(scorer, k=1)
>>> scored = scorer.score_columns({"v1": np.array([-1.0, 3.0]), "v2": np.array([0.0, 0.5])})
>>> r = explainer.reasons(scored.features, select_rows("flagged", scored.probability, scored.label))
>>> r.rows.tolist(), r.as_lists()[0][0]["feature"], r.as_lists()[0][0]["value"]
([1], 'v1', 3.0)
>>> c = explainer.contributions(scored.features.matrix())
>>> bool(np.allclose(c.sum(axis=1), np.log(scored.probability / (1 - scored.probability)), atol=1e-4))
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import orjson

from breeboost.settings import REASON_MODES
from models.features import Features
from models.spec import FeatureSpec

__all__ = ["REASON_MODES", "Explainer", "Reasons", "EventSample", "select_rows", "event_hash", "explain_samples",
           "reference_attribution", "ATTRIBUTION_REFERENCE_ROWS"]

#: Rows of the training slice whose contributions make the profile's attribution reference.
ATTRIBUTION_REFERENCE_ROWS = 4000
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def select_rows(mode: str, probability: np.ndarray, label: np.ndarray, review_threshold: float = 1.0) -> np.ndarray:
    """Positions of the rows that get reasons under ``mode``, one of :data:`REASON_MODES`
    (``breeboost.settings``): ``flagged`` (``fraud_label`` 1), ``review`` (flagged, or a probability at or
    above ``review_threshold``), ``all``, ``none``.

    >>> select_rows("review", np.array([0.1, 0.6, 0.95]), np.array([0, 0, 1]), review_threshold=0.5).tolist()
    [1, 2]
    """
    if mode not in REASON_MODES:
        raise ValueError(f"reasons must be one of {', '.join(REASON_MODES)}, got {mode!r}")
    label = np.asarray(label)
    if mode == "none":
        return np.empty(0, dtype=np.int64)
    if mode == "all":
        return np.arange(label.size, dtype=np.int64)
    chosen = label == 1
    if mode == "review":
        chosen = chosen | (np.asarray(probability, dtype=np.float64) >= review_threshold)
    return np.flatnonzero(chosen)


@dataclass(frozen=True)
class Reasons:
    """The reasons of some rows of a batch: row ``i`` of each array is batch row ``rows[i]``.

    ``feature``: indices into ``names`` (the model's features), largest contribution first; ``value``: the
    feature's value (numeric features as the transaction gave them, one-hot features 0 or 1, NaN when
    missing); ``contribution``: log-odds, rounded to 6 decimals; ``base_value``: the bias term.
    """

    rows: np.ndarray
    feature: np.ndarray
    value: np.ndarray
    contribution: np.ndarray
    base_value: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.rows.size)

    def encoded(self) -> list[bytes]:
        """Per row, the JSON of :meth:`as_lists` (``orjson.dumps`` of it, byte for byte), built from bytes
        pieces: a flagged batch allocates no dict per reason (each is a tracked object, and the stream's
        garbage collections rescan the whole heap).

        >>> r = Reasons(np.array([4]), np.array([[1, 0]]), np.array([[2.5, np.nan]]), np.array([[1.25, -0.5]]),
        ...             np.array([-7.0]), ("a", "b"))
        >>> r.encoded()[0] == orjson.dumps(r.as_lists()[0])
        True
        """
        if not self.rows.size:
            return []
        names = [orjson.dumps(n) for n in self.names]
        k = self.feature.shape[1]
        values = orjson.dumps(self.value.ravel().tolist())[1:-1].split(b",")
        contribs = orjson.dumps(self.contribution.ravel().tolist())[1:-1].split(b",")
        feats = self.feature.ravel().tolist()
        items = [b'{"feature":' + names[f] + b',"value":' + v + b',"contribution":' + c + b"}"
                 for f, v, c in zip(feats, values, contribs)]
        return [b"[" + b",".join(items[i:i + k]) + b"]" for i in range(0, len(items), k)]

    def as_lists(self) -> list[list[dict[str, Any]]]:
        """Per row, its reasons as ``{"feature", "value", "contribution"}`` dicts (NaN values as ``None``)."""
        names = self.names
        values = np.where(np.isnan(self.value), None, self.value).tolist() if self.value.size else []
        return [[{"feature": names[f], "value": v, "contribution": c} for f, v, c in zip(fr, vr, cr)]
                for fr, vr, cr in zip(self.feature.tolist(), values, self.contribution.tolist())]


class Explainer:
    """Exact TreeSHAP of one booster (see the module docstring). Build it with :meth:`of` from a
    :class:`models.scorer.Scorer`, or from a booster and its spec (training)."""

    def __init__(self, booster: Any, spec: FeatureSpec, nthread: int = 1, k: int = 3) -> None:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if int(nthread) < 1:
            raise ValueError(f"nthread must be >= 1, got {nthread!r}")
        self.booster = booster
        self.spec = spec
        self.k = int(k)
        self.nthread = int(nthread)
        self.names = tuple(spec.feature_names)
        self.inputs, self._groups = _input_groups(spec)
        self._numeric = [(j, name) for j, name in enumerate(spec.numeric_features)]
        self._base: float | None = None

    @classmethod
    def of(cls, scorer: Any, k: int = 3) -> "Explainer":
        return cls(scorer.booster, scorer.spec, scorer.nthread, k)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """``(rows, features + 1)`` float32 contributions of the model-input ``matrix``, the last column
        the bias: one ``DMatrix``, one ``pred_contribs`` call."""
        import xgboost as xgb

        m = np.ascontiguousarray(matrix, dtype=np.float32)
        if not np.isfinite(m).all():
            # a huge amount overflows a derived float32 feature to inf: inplace_predict takes it, a DMatrix
            # refuses it. The largest float32 takes the same branch of every split (beyond any threshold)
            m = np.nan_to_num(m, nan=np.nan, posinf=np.finfo(np.float32).max, neginf=np.finfo(np.float32).min)
        if m.shape[0] == 0:
            return np.empty((0, len(self.names) + 1), dtype=np.float32)
        dm = xgb.DMatrix(m, feature_names=list(self.names), nthread=self.nthread)
        out = np.asarray(self.booster.predict(dm, pred_contribs=True, validate_features=False), dtype=np.float32)
        if self._base is None:
            self._base = float(out[0, -1])
        return out

    @property
    def base_value(self) -> float:
        """The bias term in log-odds (the same for every row)."""
        if self._base is None:
            self.contributions(np.zeros((1, len(self.names)), dtype=np.float32))
        return float(self._base)

    def reasons(self, features: Features, rows: np.ndarray, contributions: np.ndarray | None = None) -> Reasons:
        """The top ``k`` reasons of the batch rows at ``rows`` (``contributions``: theirs, if computed)."""
        rows = np.asarray(rows, dtype=np.int64)
        k = min(self.k, len(self.names))
        if contributions is None:
            contributions = self.contributions(features.matrix()[rows]) if rows.size else None
        if not rows.size:
            empty = np.empty((0, k))
            return Reasons(rows, empty.astype(np.int64), empty, empty, np.empty(0), self.names)
        c = contributions[:, :-1]
        top = np.argsort(-c, axis=1, kind="stable")[:, :k]
        values = features.matrix()[rows].astype(np.float64)
        for j, name in self._numeric:
            values[:, j] = features.numeric[name][rows]
        pick = np.arange(rows.size)[:, None]
        return Reasons(rows, top, values[pick, top], np.round(c[pick, top].astype(np.float64), 6),
                       np.round(contributions[:, -1].astype(np.float64), 6), self.names)

    def grouped(self, contributions: np.ndarray) -> np.ndarray:
        """``(rows, inputs)`` float64: the contributions per input feature (:attr:`inputs`; a categorical
        column's one-hot features summed), without the bias."""
        return contributions[:, :-1].astype(np.float64) @ self._groups


def _input_groups(spec: FeatureSpec) -> tuple[tuple[str, ...], np.ndarray]:
    """The input features (numeric features, then categorical columns) and the 0/1 matrix that sums the
    model's features into them."""
    inputs = tuple(spec.numeric_features) + tuple(spec.categorical)
    groups = np.zeros((len(spec.feature_names), len(inputs)))
    j = 0
    for g, _ in enumerate(spec.numeric_features):
        groups[j, g] = 1.0
        j += 1
    cats = spec.category_map
    for g, col in enumerate(spec.categorical, start=len(spec.numeric_features)):
        for _ in cats[col]:
            groups[j, g] = 1.0
            j += 1
    return inputs, groups


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def event_hash(offsets: np.ndarray, items: np.ndarray, partition: int, seed: int = 0) -> np.ndarray:
    """A 64-bit hash of each event's position (``items`` -1 for a single-transaction message): SplitMix64's
    finaliser over the offset and item, salted by the partition and seed (one pass: it runs on every scored
    event of a window with attribution).

    >>> h = event_hash(np.array([5, 5, 6]), np.array([-1, 0, -1]), partition=1)
    >>> len(set(h.tolist())), bool((event_hash(np.array([6]), np.array([-1]), 1) == h[2]).all())
    (3, True)
    """
    salt = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + (int(partition) + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        x = np.asarray(offsets, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= (np.asarray(items, dtype=np.int64) + 1).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)
        x ^= salt
        return _mix(x)


class EventSample:
    """The ``size`` events of one partition's window with the smallest :func:`event_hash`, with their
    model-input rows; their contributions are computed once each, when first asked for (:meth:`sums`).

    The sample does not depend on how the events were cut into batches or in which order they came
    (an event seen twice, a redelivery, counts once).

    >>> s = EventSample(2, partition=0)
    >>> m = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> s.add(np.arange(4), np.full(4, -1), m, np.arange(4))
    >>> t = EventSample(2, partition=0)
    >>> for i in (3, 1, 0, 2, 1):
    ...     t.add(np.array([i]), np.array([-1]), m, np.array([i]))
    >>> len(s), sorted(s.rows[:, 0].tolist()) == sorted(t.rows[:, 0].tolist())
    (2, True)
    """

    def __init__(self, size: int, partition: int = 0, seed: int = 0) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.size = int(size)
        self.partition = int(partition)
        self.seed = int(seed)
        self._hash = np.empty(0, dtype=np.uint64)
        self.rows: np.ndarray | None = None
        self._contrib: np.ndarray | None = None     # per kept row, grouped by input; NaN: not computed yet

    def __len__(self) -> int:
        return int(self._hash.size)

    def add(self, offsets: np.ndarray, items: np.ndarray, matrix: np.ndarray, positions: np.ndarray) -> None:
        """Offer events: their ``offsets`` and envelope ``items``, their rows ``matrix[positions]``."""
        h = event_hash(offsets, items, self.partition, self.seed)
        if self._hash.size >= self.size:
            keep = h < self._hash[-1]         # kept hashes are sorted: the last is the largest
            if not keep.any():
                return
            h, positions = h[keep], np.asarray(positions)[keep]
        rows = np.asarray(matrix[positions], dtype=np.float32)
        if self.rows is None:
            self.rows = np.empty((0, rows.shape[1]), dtype=np.float32)
        hashes = np.concatenate([self._hash, h])
        all_rows = np.concatenate([self.rows, rows])
        contrib = self._contrib if self._contrib is not None else np.empty((0, 0))
        _, first = np.unique(hashes, return_index=True)        # sorted by hash: the smallest first
        first = first[:self.size]
        self._hash, self.rows = hashes[first], all_rows[first]
        if contrib.shape[1]:
            padded = np.full((hashes.size, contrib.shape[1]), np.nan)
            padded[:contrib.shape[0]] = contrib
            self._contrib = padded[first]

    def _todo(self, explainer: Explainer) -> np.ndarray:
        """Positions of the kept rows whose contributions are not computed yet."""
        if self.rows is None:
            return np.empty(0, dtype=np.int64)
        if self._contrib is None or self._contrib.shape[1] != len(explainer.inputs):
            self._contrib = np.full((len(self), len(explainer.inputs)), np.nan)
        return np.flatnonzero(np.isnan(self._contrib[:, 0]))

    def contributions(self, explainer: Explainer) -> np.ndarray:
        """``(len(self), inputs)`` contributions of the kept rows (computed for the new ones, in one call)."""
        if self.rows is None:
            return np.empty((0, len(explainer.inputs)))
        explain_samples(explainer, [self])
        return self._contrib

    def sums(self, explainer: Explainer) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """``(events, sum, sum of |.|, sum of squares)`` of the kept rows' contributions per input."""
        c = self.contributions(explainer)
        return len(self), c.sum(axis=0), np.abs(c).sum(axis=0), (c * c).sum(axis=0)


def explain_samples(explainer: Explainer, samples: list[EventSample]) -> None:
    """Compute the missing contributions of several samples in one ``pred_contribs`` call (the window
    stage explains the partials it ships together: ~0.5-1 ms a call saved per partition)."""
    todo = [(s, s._todo(explainer)) for s in samples]
    todo = [(s, t) for s, t in todo if t.size]
    if not todo:
        return
    grouped = explainer.grouped(explainer.contributions(np.concatenate([s.rows[t] for s, t in todo])))
    at = 0
    for s, t in todo:
        s._contrib[t] = grouped[at:at + t.size]
        at += t.size


def reference_attribution(explainer: Explainer, matrix: np.ndarray, rows: int = ATTRIBUTION_REFERENCE_ROWS,
                          seed: int = 0) -> dict[str, Any]:
    """The attribution reference of a slice (``matrix``: its model inputs): the mean contribution, mean
    |contribution| and standard deviation of each input feature over a seeded sample of ``rows`` rows,
    and the base value. The model's profile stores it as ``attribution``."""
    n = int(matrix.shape[0])
    take = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False)) if n > rows else np.arange(n)
    c = explainer.grouped(explainer.contributions(matrix[take])) if take.size else np.empty((0, len(explainer.inputs)))
    size = max(int(take.size), 1)
    features: Mapping[str, dict] = {
        name: {"mean": float(c[:, j].sum() / size), "mean_abs": float(np.abs(c[:, j]).sum() / size),
               "std": float(c[:, j].std()) if take.size else 0.0}
        for j, name in enumerate(explainer.inputs)}
    return {"rows": int(take.size), "seed": int(seed), "slice": "training", "base_value": explainer.base_value,
            "features": dict(features)}
