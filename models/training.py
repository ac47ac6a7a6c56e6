"""Training: validate the rows, split them in time, boost with early stopping, choose the threshold,
evaluate the test slice and build the drift reference profile.

* **Rows**: the table is validated with the serving rules (:func:`models.validation.validate_columns`);
  rows serving would dead-letter are dropped and counted, rows without a 0/1 label too. Categories the
  spec does not list are learned from the remaining rows (sorted) and stored in the model's spec.
* **Split** (``split="time"``, the default): rows sorted by the spec's event-time column (row order when
  the data has none), the earliest ``1 - valid_fraction - test_fraction`` train, the next
  ``valid_fraction`` validate, the latest ``test_fraction`` test. ``split="random"`` shuffles with the seed.
* **Boosting**: XGBoost ``hist``, ``scale_pos_weight = negatives / positives`` of the training slice,
  early stopping on validation log loss (AUPRC is logged too, but it saturates at 1.0 within a few rounds
  on clean data and would stop boosting after one tree); the booster keeps the trees up to the best
  iteration.
* **Threshold**: :func:`models.evaluation.choose_threshold` on the validation slice (max F1).
* **Calibrator**: :class:`models.calibrator.Calibrator` (binned isotonic) on the validation slice, stored in
  the profile under ``calibration`` (the label-free estimate reads it); the test slice's Brier score, log
  loss, fraud rate and mean raw and calibrated probability join its metrics (the concept section's
  reference).
* **Profile**: ``detectors.profile.build_profile`` over the *training* slice's features (what the model
  learned from; features in the spec's ``drift.exclude`` are left out) and the scores of the validation
  and test slices (out-of-sample, like the scores seen in serving), at the chosen threshold; and its
  ``attribution``: the mean exact TreeSHAP contribution of every input feature over a seeded sample of
  the training slice (:func:`models.explain.reference_attribution`), what drift windows' attribution is
  compared with.

Deterministic: the same data, spec and config give the same model version.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from models.artifact import model_version, save_artifact
from models.calibrator import Calibrator
from models.errors import DataError
from models.evaluation import choose_threshold, evaluate_scores
from models.features import Features, compute_features
from models.spec import FeatureSpec
from models.validation import validate_columns

__all__ = ["TrainConfig", "TrainedModel", "train_model", "split_positions", "labels_of", "SPLITS"]

SPLITS = ("time", "random")
STOP_METRICS = ("logloss", "aucpr")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; every field is validated at construction (``ValueError`` names it)."""

    seed: int = 0
    split: str = "time"
    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    n_estimators: int = 400
    max_depth: int = 6
    learning_rate: float = 0.1
    early_stopping_rounds: int = 30
    stop_on: str = "logloss"      # the validation metric early stopping watches: logloss or aucpr
    nthread: int = 2
    subsample: float = 0.9
    colsample_bytree: float = 0.5
    max_bin: int = 256
    progress_every: int = 50

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {getattr(self, name)!r}")
        for name in ("n_estimators", "max_depth", "early_stopping_rounds", "nthread", "progress_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.stop_on not in STOP_METRICS:
            raise ValueError(f"stop_on must be one of {', '.join(STOP_METRICS)}, got {self.stop_on!r}")
        if self.max_bin < 2:
            raise ValueError(f"max_bin must be >= 2, got {self.max_bin!r}")
        for name in ("learning_rate", "subsample", "colsample_bytree"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")

    def xgb_params(self, scale_pos_weight: float) -> dict[str, Any]:
        # XGBoost stops early on the last metric listed
        metrics = ["aucpr", "logloss"] if self.stop_on == "logloss" else ["logloss", "aucpr"]
        return {"objective": "binary:logistic", "eval_metric": metrics, "tree_method": "hist",
                "max_depth": self.max_depth, "eta": self.learning_rate, "subsample": self.subsample,
                "colsample_bytree": self.colsample_bytree, "max_bin": self.max_bin,
                "scale_pos_weight": scale_pos_weight, "nthread": self.nthread, "seed": self.seed}


@dataclass
class TrainedModel:
    """A trained model in memory; :meth:`save` writes the artifact directory."""

    booster: Any
    spec: FeatureSpec
    threshold: float
    metadata: dict[str, Any]
    profile: dict[str, Any]
    report: dict[str, Any]
    validation_report: dict[str, Any] = field(default_factory=dict)

    def booster_bytes(self) -> bytes:
        return bytes(self.booster.save_raw("ubj"))

    @property
    def version(self) -> str:
        return model_version(self.booster_bytes(), self.spec.to_dict())

    def save(self, model_dir: str | Path) -> str:
        """Write ``model_dir`` and return the model version."""
        raw = self.booster_bytes()
        version = model_version(raw, self.spec.to_dict())
        save_artifact(model_dir, raw, {**self.metadata, "version": version}, self.profile, self.report)
        return version


def labels_of(columns: Mapping[str, Any], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels as int8 and a mask of rows that have one; :class:`DataError` for other values."""
    if spec.label is None:
        raise DataError(f"spec {spec.name!r} declares no label column")
    if spec.label not in columns:
        raise DataError(f"the data has no label column {spec.label!r} (columns: {', '.join(list(columns)[:20])})")
    raw = np.asarray(columns[spec.label])
    if raw.dtype.kind in "biuf":
        values = raw.astype(np.float64)
    else:
        values = np.array([np.nan if v is None or v == "" else v for v in raw.tolist()], dtype=object)
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            bad = next(v for v in raw.tolist() if not isinstance(v, (int, float)) and v not in (None, ""))
            raise DataError(f"label column {spec.label!r} must hold 0/1, found {bad!r}") from None
    has = ~np.isnan(values)
    odd = has & (values != 0) & (values != 1)
    if odd.any():
        raise DataError(f"label column {spec.label!r} must hold 0/1, found {values[odd][0]!r}")
    return np.where(has, values, 0).astype(np.int8), has


def split_positions(n: int, config: TrainConfig, order_key: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the train, validation and test slices.

    >>> tr, va, te = split_positions(10, TrainConfig(valid_fraction=0.2, test_fraction=0.2),
    ...                              order_key=np.arange(10)[::-1].astype(float))
    >>> tr.tolist(), va.tolist(), te.tolist()
    ([9, 8, 7, 6, 5, 4], [3, 2], [1, 0])
    """
    if config.split == "random":
        order = np.random.default_rng(config.seed).permutation(n)
    elif order_key is not None:
        order = np.argsort(order_key, kind="stable")  # NaN times sort last
    else:
        order = np.arange(n)
    n_test = int(round(n * config.test_fraction))
    n_valid = int(round(n * config.valid_fraction))
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise DataError(f"{n} usable rows are too few to split into train/validation/test")
    return order[:n_train], order[n_train:n_train + n_valid], order[n_train + n_valid:]


def _learn_categories(columns: Mapping[str, np.ndarray], spec: FeatureSpec) -> FeatureSpec:
    learned = {c: np.unique(np.asarray(columns[c]).astype(str)).tolist() for c in spec.categorical
               if c not in spec.category_map}
    return spec.with_categories(learned) if learned else spec


def _predict(booster: Any, matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    return np.asarray(booster.inplace_predict(matrix), dtype=np.float32)


def _versions() -> dict[str, str]:
    import xgboost

    return {"xgboost": xgboost.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "breeboost": "0.1.0"}


def _slice_summary(name: str, y: np.ndarray, times: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": int(y.size), "positives": int(y.sum())}
    if times is not None and times.size and np.isfinite(times).any():
        out["event_time_min"] = float(np.nanmin(times))
        out["event_time_max"] = float(np.nanmax(times))
    return out


@dataclass
class _Usable:
    """The rows training can use: validated as serving would, with a 0/1 label."""
    columns: dict[str, np.ndarray]
    labels: np.ndarray
    rows_read: int
    dropped: dict[str, int]


@dataclass
class _Split:
    """Train / validation / test positions into the usable rows, the event times they were ordered by
    (``None``: row order or random) and the summary of each slice."""
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    times: np.ndarray | None
    slices: dict[str, dict[str, Any]]


def train_model(columns: Mapping[str, Any], spec: FeatureSpec, config: TrainConfig | None = None,
                progress: Progress | None = None, source: str = "columns") -> TrainedModel:
    """Train a model on a table (see the module docstring); ``progress`` receives one line per step."""
    config = config or TrainConfig()
    say = progress or (lambda line: None)
    started = time.perf_counter()
    usable = _usable_rows(columns, spec, say)
    spec = _learn_categories(usable.columns, spec)
    split = _split(usable, spec, config, say)
    features = compute_features(usable.columns, spec)
    X, y = features.matrix(), usable.labels
    booster, best, boost_s, spw = _boost(X, y, split, list(spec.feature_names), config, say)
    p_valid, p_test = _predict(booster, X[split.valid]), _predict(booster, X[split.test])
    threshold = choose_threshold(y[split.valid], p_valid)
    group_col = spec.type_column
    groups = None if group_col is None else features.categorical[group_col]
    valid_report = evaluate_scores(y[split.valid], p_valid, threshold,
                                   None if groups is None else groups[split.valid], group_col)
    report = evaluate_scores(y[split.test], p_test, threshold,
                             None if groups is None else groups[split.test], group_col)
    report["slice"] = "test"
    valid_report["slice"] = "validation"
    say(f"best round {best + 1} ({boost_s:.1f} s); threshold {threshold:.6g} (max F1 on validation: "
        f"{valid_report['at_threshold']['f1']:.4f})")
    say(f"test: AUPRC {report['auprc']}, ROC AUC {report['roc_auc']}, precision {report['at_threshold']['precision']}, "
        f"recall {report['at_threshold']['recall']}")
    train_features = features.take(split.train)
    profile = _build_profile(train_features, spec, np.concatenate([p_valid, p_test]), threshold, config.seed)
    profile["attribution"] = _attribution(booster, spec, train_features, config, say)
    calibrator = Calibrator.fit(y[split.valid], p_valid)
    probability_test = _probability_summary(y[split.test], p_test, calibrator)
    profile["calibration"] = calibrator.to_dict(fitted_on="validation slice",
                                                brier_raw=probability_test["brier"],
                                                brier_calibrated=probability_test["calibrated_brier"])
    training = _training_record(usable, split, spec, config, source, spw, best, boost_s, started)
    metadata = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec": spec.to_dict(),
        "feature_names": list(spec.feature_names),
        "threshold": threshold,
        "threshold_rule": "max F1 on the validation slice; label = probability >= threshold",
        "training": training,
        "libraries": _versions(),
        "metrics": {"validation": _summary(valid_report), "test": {**_summary(report), **probability_test}},
        "profile": {"features": "training slice", "scores": "validation and test slices",
                    "excluded": list(spec.drift_exclude),
                    "attribution": f"training slice, {profile['attribution']['rows']} rows",
                    "calibration": "validation slice (binned isotonic, models.calibrator)"},
    }
    return TrainedModel(booster, spec, threshold, metadata, profile, report, valid_report)


def _usable_rows(columns: Mapping[str, Any], spec: FeatureSpec, say: Progress) -> _Usable:
    """Validate with the serving rules and keep the rows with a label; :class:`DataError` if none is left."""
    total = len(next(iter(columns.values()))) if columns else 0
    labels, has_label = labels_of(columns, spec)
    validated = validate_columns(columns, spec)
    dropped = validated.reason_counts()
    keep = has_label[validated.accepted]
    if not keep.all():
        dropped["missing_label"] = int((~keep).sum())
    rows = validated.accepted[keep]
    cols = {k: v[keep] for k, v in validated.columns.items()} if not keep.all() else validated.columns
    say(f"rows: {total} read, {rows.size} usable" + (f", dropped {dropped}" if dropped else ""))
    if rows.size == 0:
        raise DataError("no usable rows to train on" + (f" (dropped: {dropped})" if dropped else ""))
    return _Usable(cols, labels[rows], total, dropped)


def _split(usable: _Usable, spec: FeatureSpec, config: TrainConfig, say: Progress) -> _Split:
    """Cut the usable rows into slices (in event time with ``split="time"``); each of train and validation
    must hold a positive label."""
    cols, y = usable.columns, usable.labels
    times = None
    if spec.event_time is not None and spec.event_time in cols and np.asarray(cols[spec.event_time]).dtype.kind in "fiu":
        times = np.asarray(cols[spec.event_time], dtype=np.float64)
    tr, va, te = split_positions(y.size, config, times if config.split == "time" else None)
    for name, part in (("training", tr), ("validation", va)):
        if y[part].sum() == 0:
            raise DataError(f"the {name} slice has no positive labels ({spec.label}=1): use more data"
                            + (" or --split random" if config.split == "time" else ""))
    slices = {name: _slice_summary(name, y[p], None if times is None else times[p])
              for name, p in (("train", tr), ("validation", va), ("test", te))}
    say(f"split {config.split}" + ("" if times is not None or config.split == "random" else " (row order)") + ": "
        + ", ".join(f"{k} {v['rows']} rows / {v['positives']} fraud" for k, v in slices.items()))
    return _Split(tr, va, te, times, slices)


class _Boosted(NamedTuple):
    booster: Any           # cut at the best validation round
    best: int              # that round, from 0
    seconds: float
    scale_pos_weight: float


def _boost(X: np.ndarray, y: np.ndarray, split: _Split, names: list[str], config: TrainConfig, say: Progress
           ) -> _Boosted:
    """XGBoost on the training slice with early stopping on the validation slice."""
    import xgboost as xgb

    tr, va = split.train, split.valid
    pos = int(y[tr].sum())
    spw = float((tr.size - pos) / pos)
    dtrain = xgb.QuantileDMatrix(X[tr], label=y[tr], feature_names=names, max_bin=config.max_bin,
                                 nthread=config.nthread)
    dvalid = xgb.QuantileDMatrix(X[va], label=y[va], feature_names=names, ref=dtrain, nthread=config.nthread)
    say(f"boosting: hist, max_depth {config.max_depth}, eta {config.learning_rate}, up to {config.n_estimators} "
        f"rounds, early stopping after {config.early_stopping_rounds} rounds without a better validation "
        f"{config.stop_on}, scale_pos_weight {spw:.1f}, "
        f"{len(names)} features, {config.nthread} threads")

    class _Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if (epoch + 1) % config.progress_every == 0:
                say(f"round {epoch + 1}: validation AUPRC {evals_log['valid']['aucpr'][-1]:.5f}, "
                    f"logloss {evals_log['valid']['logloss'][-1]:.5f}")
            return False

    t0 = time.perf_counter()
    booster = xgb.train(config.xgb_params(spw), dtrain, num_boost_round=config.n_estimators,
                        evals=[(dvalid, "valid")], early_stopping_rounds=config.early_stopping_rounds,
                        verbose_eval=False, callbacks=[_Progress()])
    best = int(booster.best_iteration)
    booster = booster[: best + 1]  # keep the trees up to the best validation round only
    booster.set_param({"nthread": config.nthread})
    return _Boosted(booster, best, time.perf_counter() - t0, spw)


def _training_record(usable: _Usable, split: _Split, spec: FeatureSpec, config: TrainConfig, source: str,
                     spw: float, best: int, boost_s: float, started: float) -> dict[str, Any]:
    """The ``training`` section of the model's metadata: data, split, boosting and timings."""
    time_split = config.split == "time"
    return {
        "source": source, "rows_read": int(usable.rows_read), "rows_used": int(usable.labels.size),
        "dropped": usable.dropped, "split": config.split,
        "ordered_by": spec.event_time if split.times is not None and time_split else
        ("row order" if time_split else "random"), "slices": split.slices,
        "scale_pos_weight": spw, "best_iteration": best, "n_trees": best + 1,
        "config": asdict(config), "params": config.xgb_params(spw),
        "boosting_seconds": round(boost_s, 3), "total_seconds": round(time.perf_counter() - started, 3),
    }


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    a = report["at_threshold"]
    return {"rows": report["rows"], "positives": report["positives"], "auprc": report["auprc"],
            "roc_auc": report["roc_auc"], "precision": a["precision"], "recall": a["recall"], "f1": a["f1"],
            "flagged": a["tp"] + a["fp"]}


def _probability_summary(y: np.ndarray, p: np.ndarray, calibrator: Calibrator) -> dict[str, Any]:
    """A slice's figures that need the probabilities: Brier score and log loss (raw and calibrated), the
    observed fraud rate and the mean raw and calibrated probability (the concept section's reference)."""
    if y.size == 0:
        return dict.fromkeys(("brier", "calibrated_brier", "log_loss", "fraud_rate", "predicted_fraud_rate",
                              "calibrated_fraud_rate"))
    p = p.astype(np.float64)
    q = calibrator.apply(p)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return {"brier": float(np.mean((p - y) ** 2)), "calibrated_brier": float(np.mean((q - y) ** 2)),
            "log_loss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
            "fraud_rate": float(y.mean()), "predicted_fraud_rate": float(p.mean()),
            "calibrated_fraud_rate": float(q.mean())}


def _attribution(booster: Any, spec: FeatureSpec, features: Features, config: TrainConfig, say: Progress
                 ) -> dict[str, Any]:
    """The profile's attribution reference: mean contributions over a seeded sample of the training slice."""
    from models.explain import Explainer, reference_attribution

    t0 = time.perf_counter()
    ref = reference_attribution(Explainer(booster, spec, config.nthread), features.matrix(), seed=config.seed)
    say(f"attribution reference: {ref['rows']} training rows explained ({time.perf_counter() - t0:.1f} s)")
    return ref


def _build_profile(features: Features, spec: FeatureSpec, scores: np.ndarray, threshold: float, seed: int
                   ) -> dict[str, Any]:
    from detectors.profile import build_profile

    excluded = set(spec.drift_exclude)
    numeric = {k: v for k, v in features.numeric.items() if k not in excluded}
    categorical = {k: v for k, v in features.categorical.items() if k not in excluded}
    return build_profile(numeric, categorical, scores.astype(np.float64), seed=seed, threshold=threshold)
