"""Serving: load a model directory once, then score batches with ``Booster.inplace_predict``.

>>> import tempfile, numpy as np
>>> from models.spec import parse_spec
>>> from models.training import TrainConfig, train_model
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(3000, 2))
>>> cols = {"v1": x[:, 0], "v2": x[:, 1], "y": (x[:, 0] + 0.2 * rng.normal(size=3000) > 1.5).astype(int)}
>>> spec = parse_spec('label = "y"\\n[features]\\nnumeric = ["v1", "v2"]')
>>> d = tempfile.mkdtemp()
>>> version = train_model(cols, spec, TrainConfig(n_estimators=20)).save(d)
>>> scorer = Scorer.load(d)
>>> scorer.version == version, scorer.feature_names
(True, ('v1', 'v2'))
>>> s = scorer.score_columns({"v1": np.array([-1.0, 3.0]), "v2": np.array([0.0, 0.0])})
>>> s.label.tolist(), bool(s.probability[1] > s.probability[0])
([0, 1], True)
>>> out = scorer.score_records([{"v1": 3.0, "v2": 0.0}, {"v1": "3"}])
>>> out.validated.accepted.tolist(), out.scored.label.tolist(), out.validated.rejects[0].reason
([0], [1], 'wrong_type')
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from models.artifact import Artifact, load_artifact
from models.errors import ModelError
from models.features import Features, compute_features, features_for_record
from models.spec import FeatureSpec
from models.validation import Validated, validate_records

__all__ = ["Scorer", "Scored", "ScoredRecords"]


@dataclass(frozen=True)
class Scored:
    """Scores of a batch: ``probability`` (float32), ``label`` (int8, ``probability >= threshold``)
    and the ``features`` they were computed from (the drift sketch reads them)."""

    probability: np.ndarray
    label: np.ndarray
    features: Features


@dataclass(frozen=True)
class ScoredRecords:
    """:meth:`Scorer.score_records`: the validation result and the scores of the accepted records
    (row ``i`` of ``scored`` is record ``validated.accepted[i]``)."""

    validated: Validated
    scored: Scored


class Scorer:
    """A loaded model. Build it with :meth:`load`; it is read-only and safe to share between batches."""

    def __init__(self, artifact: Artifact, nthread: int = 1) -> None:
        if int(nthread) < 1:
            raise ValueError(f"nthread must be >= 1, got {nthread!r}")
        import xgboost as xgb

        self.nthread = int(nthread)
        self.path = artifact.path
        self.metadata = artifact.metadata
        self.profile = artifact.profile
        self.report = artifact.report
        try:
            self.spec = FeatureSpec.from_dict(artifact.metadata["spec"], f"{artifact.path}/metadata.json spec")
        except Exception as e:
            raise ModelError(f"{str(artifact.path)!r}: the spec in metadata.json is invalid: {e}") from None
        self.version: str = artifact.metadata["version"]
        self.threshold = float(artifact.metadata["threshold"])
        self.feature_names = tuple(self.spec.feature_names)
        if list(self.feature_names) != list(artifact.metadata["feature_names"]):
            raise ModelError(f"{str(artifact.path)!r}: feature order in metadata.json differs from its spec")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(artifact.booster_bytes))
        except xgb.core.XGBoostError as e:
            raise ModelError(f"{str(artifact.path)!r}: XGBoost cannot load the model: {str(e).splitlines()[0]}") from None
        if booster.num_features() != len(self.feature_names):
            raise ModelError(f"{str(artifact.path)!r}: the booster has {booster.num_features()} features, "
                             f"the spec {len(self.feature_names)}")
        booster.set_param({"nthread": self.nthread})
        self.booster = booster

    @classmethod
    def load(cls, model_dir: str | Path, nthread: int = 1) -> "Scorer":
        """Load and check ``model_dir`` (:class:`models.errors.ModelError` if missing or corrupt)."""
        return cls(load_artifact(model_dir), nthread)

    def __repr__(self) -> str:
        return f"Scorer(version={self.version!r}, threshold={self.threshold:.6g}, path={str(self.path)!r})"

    def _predict(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        return np.asarray(self.booster.inplace_predict(matrix), dtype=np.float32)

    def score_features(self, features: Features) -> Scored:
        p = self._predict(features.matrix())
        return Scored(p, (p >= self.threshold).astype(np.int8), features)

    def score_columns(self, columns: Mapping[str, Any]) -> Scored:
        """Score validated columns (e.g. ``validate_records(...).columns``)."""
        return self.score_features(compute_features(columns, self.spec))

    def score_records(self, records: Sequence[Any]) -> ScoredRecords:
        """Validate decoded records and score the accepted ones."""
        validated = validate_records(records, self.spec)
        return ScoredRecords(validated, self.score_columns(validated.columns))

    def score_record(self, record: Mapping[str, Any]) -> tuple[float, int]:
        """``(probability, label)`` of one (valid) record, through the single-record feature path."""
        p = float(self._predict(features_for_record(record, self.spec).matrix())[0])
        return p, int(p >= self.threshold)

    def predict_one_dmatrix(self, record: Mapping[str, Any]) -> float:
        """One record through a ``DMatrix`` and ``Booster.predict``: the slow path, for benchmarks only."""
        import xgboost as xgb

        m = features_for_record(record, self.spec).matrix()
        return float(self.booster.predict(xgb.DMatrix(m, feature_names=list(self.feature_names)))[0])
