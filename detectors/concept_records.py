"""The typed parts of model health in the drift topics: the window's binned scores (:class:`ScoreBins`, in
a ``drift.partials`` partial's sketch: :mod:`detectors.binned_window`) and the ``concept`` sections the
aggregator adds to ``drift.stats`` (``performance``, ``detectors``, ``estimate``;
:class:`detectors.health.ModelHealth` writes them).

Kept apart from :mod:`detectors.records` (which declares them in ``Concept`` and ``DriftPartial``) so each
file stays one size a reader can hold. See docs/detectors.md, "The concept section".
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from detectors.binning import N_BINS

__all__ = ["ScoreBins", "ScoreCounter", "Figures", "Drops", "ConceptPerformance", "DetectorState", "ConceptDetectors", "Rates",
           "EstimateCheck", "Estimate"]

Count = Annotated[int, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]


class ScoreBins(msgspec.Struct, kw_only=True):
    """The fraud probabilities of a partition's window so far, binned on the grid of
    :mod:`detectors.binning` (``bins``), and those of them at or above the model threshold (``flagged``):
    what the label-free estimate (:mod:`detectors.estimate`) reads. Sparse ``{bin: count}``; partials of a
    window merge by adding (:meth:`merge`).

    >>> a = ScoreBins.of([0.001, 0.9, 0.2], threshold=0.5)
    >>> a.merge(ScoreBins.of([0.95], threshold=0.5)).events, a.flagged
    (4, {145: 1, 151: 1})
    """

    bins: dict[int, int] = {}
    flagged: dict[int, int] = {}

    @classmethod
    def of(cls, probabilities: Any, threshold: float | None) -> "ScoreBins":
        import numpy as np

        from detectors.binning import bin_of, sparse

        p = np.asarray(probabilities, dtype=np.float64)
        b = bin_of(p)
        flagged = b[p >= threshold] if threshold is not None else b[:0]
        return cls(bins=sparse(np.bincount(b, minlength=N_BINS)),
                   flagged=sparse(np.bincount(flagged, minlength=N_BINS)))

    @property
    def events(self) -> int:
        return sum(self.bins.values())

    def merge(self, other: "ScoreBins") -> "ScoreBins":
        """Add ``other``'s counts into these; returns self."""
        for mine, theirs in ((self.bins, other.bins), (self.flagged, other.flagged)):
            for b, c in theirs.items():
                mine[b] = mine.get(b, 0) + c
        return self


class ScoreCounter:
    """The dense counts behind a :class:`ScoreBins` while a window is open (the worker's hot path: one
    ``bincount`` per sketch update); :meth:`record` is what the sketch ships (:mod:`detectors.binned_window`).

    >>> c = ScoreCounter(threshold=0.5)
    >>> c.add([0.001, 0.9]); c.add([0.2])
    >>> c.record() == ScoreBins.of([0.001, 0.9, 0.2], threshold=0.5)
    True
    """

    def __init__(self, threshold: float | None) -> None:
        import numpy as np

        self.threshold = threshold
        self.counts = np.zeros(N_BINS, dtype=np.int64)
        self.flagged = np.zeros(N_BINS, dtype=np.int64)

    def add(self, probabilities: Any) -> None:
        import numpy as np

        from detectors.binning import bin_of

        p = np.asarray(probabilities, dtype=np.float64)
        if p.size == 0:
            return
        b = bin_of(p)
        self.counts += np.bincount(b, minlength=N_BINS)
        if self.threshold is not None:
            self.flagged += np.bincount(b[p >= self.threshold], minlength=N_BINS)

    def record(self) -> ScoreBins:
        from detectors.binning import sparse

        return ScoreBins(bins=sparse(self.counts), flagged=sparse(self.flagged))


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Drops(_Strict):
    """``(reference - current) / reference`` of each metric; ``None`` when either is unknown or the labels
    are too few (``thresholds.min_labels`` labelled events, ``thresholds.min_positives`` frauds for recall
    and AUPRC, flagged events for precision; F1: both)."""

    precision: float | None
    recall: float | None
    f1: float | None
    auprc: float | None


class Figures(_Strict):
    """Performance of a set of labelled events (``positives`` frauds among them, ``flagged`` at or above the
    model threshold): precision, recall, F1, AUPRC (binned,
    with ``auprc_bin_error`` its bound), mean Brier score and log loss, and calibration: the observed fraud
    rate (frauds / labelled) against the mean probability (``predicted_fraud_rate``) and the mean calibrated
    probability (``calibrated_fraud_rate``, ``None`` without a calibrator). ``windows``: the windows pooled;
    ``drop``: against the reference (absent in the reference itself). ``None``: undefined."""

    labelled: Count
    positives: Count
    flagged: Count
    windows: Count
    precision: float | None
    recall: float | None
    f1: float | None
    auprc: float | None
    auprc_bin_error: float | None
    brier: float | None
    log_loss: float | None
    observed_fraud_rate: float | None
    predicted_fraud_rate: float | None
    calibrated_fraud_rate: float | None
    drop: Drops | None


class ConceptPerformance(_Strict):
    """The figures of this window's labels, of the last labels (the most recent windows that together hold at
    least ``last_labels_target`` labels) and of the last seconds (windows closed within
    ``last_seconds_target`` s), next to the model's own on its test slice (``reference``, ``None`` when the
    artifact has none)."""

    window: Figures
    last_labels: Figures
    last_seconds: Figures
    reference: Figures | None
    last_labels_target: Count
    last_seconds_target: float


class DetectorState(_Strict):
    """One river detector on the per-label stream of this model version: values seen (``n``), detections
    in this window, the index of the last one ever in its stream and the window it fell in (``None``: none
    yet), and ``drift_detected`` (a detection in this window)."""

    detector: str
    stream: str
    n: Count
    detections: Count
    last_detection: int | None
    last_detection_window: int | None
    drift_detected: bool


class ConceptDetectors(_Strict):
    """River's sequential detectors on the joined labels of one model version (docs/detectors.md): ADWIN
    on the absolute error ``|label - probability|``, Page-Hinkley on the log loss (upward changes), KSWIN
    on the absolute error of a bounded sample of each window's labels. ``drift_detected``: any of them
    detected a change in this window."""

    labels: Count
    adwin: DetectorState
    page_hinkley: DetectorState
    kswin: DetectorState
    drift_detected: bool


class Rates(_Strict):
    """Precision, recall at the threshold and the fraud rate (``None``: undefined)."""

    precision: float | None
    recall: float | None
    fraud_rate: float | None


class EstimateCheck(_Strict):
    """The estimate against the labels: on a set of ``labelled`` events, the figures estimated from their
    calibrated probabilities, the realised ones, and ``error`` = estimated - realised."""

    labelled: Count
    estimated: Rates
    realised: Rates
    error: Rates


class Estimate(_Strict):
    """The label-free estimate of the window's performance (confidence-based, NannyML's CBPE): from the
    calibrated probabilities of the window's ``events`` scored events (``flagged`` of them at or above the
    threshold), the expected precision, recall, F1, fraud rate and AUPRC; ``window_check`` and
    ``rolling_check`` compare the same estimate with the labels of this window and of the last labels."""

    method: str
    calibrator: str
    events: Count
    flagged: Count
    precision: float | None
    recall: float | None
    f1: float | None
    fraud_rate: float | None
    auprc: float | None
    window_check: EstimateCheck
    rolling_check: EstimateCheck
