"""The records of the drift topics as typed msgspec structs: ``drift.partials`` and ``drift.stats``.

``drift.partials`` carries two kinds of record under one key, told apart by ``kind``: a :class:`DriftPartial`
(one partition's window sketch, shipped when the window closes or goes idle, with the label counts joined
since the previous one and the :class:`AttributionSums` of its sampled events) and a :class:`Progress`
heartbeat (the partition's open window, no sketch).
:func:`encode_partial` / :func:`decode_partial` are their one codec. Partials are decoded leniently (a field
a newer worker adds is ignored), so workers of two versions can share the topic during an upgrade.

``drift.stats`` is one :class:`DriftStats` per window: the payload of
:func:`detectors.stats.window_statistics`, which returns it as a plain dict (what the incident policy,
the report and the metrics read). :func:`encode_stats` checks that dict against the struct, strictly (an
undeclared field, a missing one or a wrong type is a :class:`RecordError`), and encodes it: the published
JSON is the dict's, field for field. The JSON Schema ``detectors/schema/drift-stats.schema.json`` is
generated from these structs (:func:`stats_schema`; a test keeps the file equal to it).

>>> p = DriftPartial("transactions", 3, 1, True, 300, 399, 100, "m1", 7.0, {"format": "..."},
...                  LabelCounts(n=2, tp=1, tn=1, brier=0.25, abs_error=0.5))
>>> data = encode_partial(p)
>>> data[:60]
b'{"kind":"partial","topic":"transactions","window_index":3,"p'
>>> decode_partial(data) == p, type(decode_partial(encode_partial(Progress("transactions", 0, -1, -1, True, 7.0))))
(True, <class 'detectors.records.Progress'>)
>>> decode_partial(b'{"kind": "sketch"}')
Traceback (most recent call last):
...
detectors.records.RecordError: drift.partials: not a partial or progress record: Invalid value 'sketch' - at `$.kind`
"""
from __future__ import annotations

import json
import math
from importlib import resources
from typing import Annotated, Any, Mapping, Union

import msgspec

from detectors.binning import LOGIT_LIMIT, LOGIT_WIDTH, N_BINS
from detectors.concept_records import ConceptDetectors, ConceptPerformance, Estimate, Figures, ScoreBins
from detectors.errors import DetectorError

__all__ = ["DriftPartial", "Progress", "LabelPartial", "PairedLabels", "PartialRecord", "LabelCounts", "AttributionSums", "ScoreBins", "DriftStats",
           "StatsWindow", "ShadowComparison",
           "NumericFeature", "CategoricalFeature", "NumericBins", "CategoricalBins", "Thresholds", "Freshness",
           "ScoreStats", "Concept", "ConceptReference", "PerformanceDrop", "Attribution", "FeatureAttribution",
           "RecordError", "encode_partial",
           "decode_partial", "encode_stats", "decode_stats", "stats_schema", "load_stats_schema",
           "STATS_SCHEMA_RESOURCE", "STATS_SCHEMA_ID"]

STATS_SCHEMA_RESOURCE = "schema/drift-stats.schema.json"
STATS_SCHEMA_ID = "https://breeboost.example/schema/drift-stats.schema.json"

Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]     # a share of events: a count over a larger count
NonNegative = Annotated[float, msgspec.Meta(ge=0)]      # statistics and p-values (no upper bound: rounding)
Count = Annotated[int, msgspec.Meta(ge=0)]


class RecordError(DetectorError):
    """A drift.partials or drift.stats record that does not match its struct (the message says where)."""


# --- drift.partials ----------------------------------------------------------------------------------
class LabelCounts(msgspec.Struct, kw_only=True):
    """Delayed labels joined to their scores in one partition since its previous partial: the confusion
    counts at the model threshold, and the sums of squared (Brier) and absolute errors of the probability.

    >>> c = LabelCounts()
    >>> c.add(1, 0.9, 1); c.add(0, 0.6, 1); c.n, c.tp, c.fp, round(c.brier, 2)
    (2, 1, 1, 0.37)
    """

    n: Count = 0
    tp: Count = 0
    fp: Count = 0
    fn: Count = 0
    tn: Count = 0
    brier: float = 0.0
    abs_error: float = 0.0
    # Added for #16 (performance on labels): the sum of probabilities and of log losses, and the labelled
    # events' probabilities binned on the grid of detectors.binning, frauds and genuine apart (AUPRC,
    # calibration, the concept detectors' per-label stream). Older partials lack them (zeros, empty).
    probability: float = 0.0
    log_loss: float = 0.0
    positive_bins: dict[int, int] = {}
    negative_bins: dict[int, int] = {}

    def add(self, label: int, probability: float, predicted: int) -> None:
        """Count one labelled event (``predicted``: the score's ``fraud_label``)."""
        self._add_binned(label, probability)
        self.n += 1
        if predicted:
            if label:
                self.tp += 1
            else:
                self.fp += 1
        elif label:
            self.fn += 1
        else:
            self.tn += 1
        self.brier += (probability - label) ** 2
        self.abs_error += abs(probability - label)

    def _add_binned(self, label: int, probability: float) -> None:
        # one log pair gives the log loss and the bin (detectors.binning.bin_of; clipping to [1e-7, 1 - 1e-7]
        # keeps every bin: the grid ends at p = 1.1e-7)
        q = _LOSS_FLOOR if probability < _LOSS_FLOOR else _LOSS_CEIL if probability > _LOSS_CEIL else probability
        lp, l1p = math.log(q), math.log1p(-q)
        self.probability += probability
        self.log_loss -= lp if label else l1p
        b = int((lp - l1p + LOGIT_LIMIT) * _PER_WIDTH)     # truncation: -1 < value < 0 gives bin 0 too
        if b >= N_BINS:
            b = N_BINS - 1
        bins = self.positive_bins if label else self.negative_bins
        bins[b] = bins.get(b, 0) + 1

    def merge(self, other: "LabelCounts") -> "LabelCounts":
        """Add ``other``'s counts into these; returns self."""
        for k in ("n", "tp", "fp", "fn", "tn", "brier", "abs_error", "probability", "log_loss"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for mine, theirs in ((self.positive_bins, other.positive_bins), (self.negative_bins, other.negative_bins)):
            for b, c in theirs.items():
                mine[b] = mine.get(b, 0) + c
        return self


#: Log losses are taken at probabilities clipped to [floor, 1 - floor] (float32 scores reach 0 and 1).
_LOSS_FLOOR = 1e-7
_LOSS_CEIL = 1.0 - 1e-7
_PER_WIDTH = 1.0 / LOGIT_WIDTH


#: Fixed point of :class:`AttributionSums` (2**-32 log-odds): integer sums add exactly, in any order.
ATTRIBUTION_SCALE = float(2 ** 32)


class AttributionSums(msgspec.Struct, kw_only=True):
    """The exact TreeSHAP contributions (log-odds) of a partition's sampled window events, summed per input
    feature: ``sum``, ``sum_abs`` (of ``|contribution|``) and ``sum_sq`` (of squares) are fixed-point
    integers (:data:`ATTRIBUTION_SCALE`) in the order of ``features``, so the partials of a window merge
    exactly by adding (:meth:`add`). ``base_value``: the model's bias term.

    >>> a = AttributionSums.of(["amount", "type"], 2, [0.5, -0.25], [0.5, 0.75], [0.125, 0.3125], -7.0)
    >>> b = AttributionSums.of(["amount", "type"], 1, [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], -7.0)
    >>> a.add(b).events, a.means()
    (3, ([0.5, -0.08333333333333333], [0.5, 0.25], [0.375, 0.10416666666666667]))
    """

    events: Count = 0
    features: list[str] = []
    sum: list[int] = []
    sum_abs: list[int] = []
    sum_sq: list[int] = []
    base_value: float = 0.0

    @classmethod
    def of(cls, features: Any, events: int, total: Any, total_abs: Any, total_sq: Any,
           base_value: float) -> "AttributionSums":
        def fixed(values: Any) -> list[int]:
            return [int(round(float(v) * ATTRIBUTION_SCALE)) for v in values]
        return cls(events=int(events), features=list(features), sum=fixed(total), sum_abs=fixed(total_abs),
                   sum_sq=fixed(total_sq), base_value=float(base_value))

    def add(self, other: "AttributionSums") -> "AttributionSums":
        """Add ``other`` (same features) into these sums; returns self."""
        if other.features != self.features:
            raise RecordError(f"attribution sums of other features cannot merge ({other.features[:3]}... vs "
                              f"{self.features[:3]}...)")
        self.events += other.events
        for mine, theirs in ((self.sum, other.sum), (self.sum_abs, other.sum_abs), (self.sum_sq, other.sum_sq)):
            mine[:] = [a + b for a, b in zip(mine, theirs)]
        return self

    def means(self) -> tuple[list[float], list[float], list[float]]:
        """Per feature: the mean contribution, mean |contribution| and mean square (0.0 without events)."""
        n = self.events * ATTRIBUTION_SCALE
        if not n:
            zeros = [0.0] * len(self.features)
            return zeros, list(zeros), list(zeros)
        return [v / n for v in self.sum], [v / n for v in self.sum_abs], [v / n for v in self.sum_sq]


class DriftPartial(msgspec.Struct, tag_field="kind", tag="partial", omit_defaults=True):
    """One partition's sketch of one window (``sketch``: :meth:`detectors.window.WindowSketch.to_dict`).

    ``complete``: the partition has reached the next window (final for this one); ``False``: shipped because
    the partition went idle (a later partial of the same window supersedes it). ``first_offset`` and
    ``last_offset`` bound the offsets it holds; ``window_messages`` is the window length per partition;
    ``labels``: the label counts joined in this partition since its previous partial, if any;
    ``attribution``: the contribution sums of the window's sampled events so far (absent: no sample).
    The sketch of the worker's window stage also carries the window's binned scores (``score_bins``,
    :mod:`detectors.binned_window`).
    """

    topic: str
    window_index: Count
    partition: Count
    complete: bool
    first_offset: Count
    last_offset: Count
    window_messages: Annotated[int, msgspec.Meta(ge=1)]
    model_version: str
    sent_at: float
    sketch: dict[str, Any]
    labels: LabelCounts | None = None
    attribution: AttributionSums | None = None


class Progress(msgspec.Struct, tag_field="kind", tag="progress"):
    """A heartbeat of one partition: its open window (``window_index`` -1 and ``last_offset`` -1: none yet)
    and whether it is ``idle`` (shipped all it has; for a partition without a window: no backlog)."""

    topic: str
    partition: Count
    window_index: Annotated[int, msgspec.Meta(ge=-1)]
    last_offset: Annotated[int, msgspec.Meta(ge=-1)]
    idle: bool
    sent_at: float


class LabelPartial(msgspec.Struct, tag_field="kind", tag="labels"):
    """The labels one label-join partition joined since its previous label partial (``topic``: the labels
    topic, ``partition``: its partition; ``counts``: the joined labels' :class:`LabelCounts`). The aggregator
    folds them into the next window it publishes (the labels that arrived while that window was pending),
    whichever worker scored the transactions, if that window is of the model that scored them (one
    partial per model version): see docs/labels.md."""

    topic: str
    partition: Count
    counts: LabelCounts
    sent_at: float
    model_version: str = ""     # the model that scored these transactions ("": not known, older records)


class PairedLabels(msgspec.Struct, tag_field="kind", tag="paired_labels"):
    """The labels one label-join partition joined since its previous partial whose transactions the
    champion (``champion_version``, when it scored them) **and** its challenger in shadow
    (``challenger_version``) both scored: each model's :class:`LabelCounts` on the same rows, in one record
    so the aggregator folds both halves into the same window (its ``shadow`` section). These labels are
    in the :class:`LabelPartial` of each version too; an aggregator that predates this kind skips it."""

    topic: str
    partition: Count
    champion_version: str
    challenger_version: str
    champion: LabelCounts
    challenger: LabelCounts
    sent_at: float


PartialRecord = Union[DriftPartial, Progress, LabelPartial, PairedLabels]
_partial_encoder = msgspec.json.Encoder()
_partial_decoder = msgspec.json.Decoder(PartialRecord)


def encode_partial(record: DriftPartial | Progress | LabelPartial | PairedLabels) -> bytes:
    """The bytes of a drift.partials record."""
    return _partial_encoder.encode(record)


def decode_partial(data: bytes) -> DriftPartial | Progress | LabelPartial | PairedLabels:
    """A drift.partials record from its bytes; :class:`RecordError` if it is not one."""
    try:
        return _partial_decoder.decode(data)
    except msgspec.DecodeError as e:   # ValidationError is a DecodeError
        raise RecordError(f"drift.partials: not a partial or progress record: {e}") from None


# --- drift.stats -------------------------------------------------------------------------------------
class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class StatsWindow(_Strict, omit_defaults=True):
    """Which events the window holds. The last four fields are set by the aggregator that merged it."""

    index: Count
    events: Annotated[Count, msgspec.Meta(description="scored + dead-lettered events")]
    scored: Count
    dead_lettered: Count
    partitions: list[Count]
    first_event_time: float | None
    last_event_time: float | None
    closed_at: float
    offsets: Annotated[dict[str, Annotated[list[Count], msgspec.Meta(min_length=2, max_length=2)]] | None, msgspec.Meta(
        description="partition -> [first offset, last offset] of its partial")] = None
    partials_of_other_models: Annotated[Count | None, msgspec.Meta(
        description="partials of another model version (a reload mid-window), left out")] = None
    labels_of_other_models: Annotated[Count | None, msgspec.Meta(
        description="labels joined while this window was pending whose transactions another model version "
                    "scored (after a model switch), left out of the concept section")] = None
    partitions_missing: Annotated[list[Count] | None, msgspec.Meta(
        description="partitions with no partial in this window")] = None
    complete: Annotated[bool | None, msgspec.Meta(
        description="every partition was final for this window when it was published")] = None


class NumericBins(_Strict):
    """PSI bins: interior ``edges`` and the reference and current share of each bin."""

    edges: list[float]
    reference: list[float]
    current: list[float]


class CategoricalBins(_Strict):
    """The reference categories (then ``(other)``) with their reference and current shares."""

    categories: list[str]
    reference: list[float]
    current: list[float]


class NumericFeature(_Strict, tag_field="kind", tag="numeric", omit_defaults=True):
    """A numeric feature's drift: PSI, two-sample KS against the reference sample, missing (NaN or absent,
    over every event) and invalid (+-inf) shares, counted values, and the calibrated ``drifted`` flag."""

    psi: NonNegative
    ks_d: NonNegative
    ks_pvalue: NonNegative
    missing_ratio: Ratio
    invalid_ratio: Ratio
    count: Count
    drifted: bool
    bins: NumericBins | None = None


class CategoricalFeature(_Strict, tag_field="kind", tag="categorical", omit_defaults=True):
    """A categorical feature's drift: PSI, chi-square against the reference counts, missing share and the
    share of categories the reference does not list (``other_ratio``)."""

    psi: NonNegative
    chi2: NonNegative
    chi2_pvalue: NonNegative
    missing_ratio: Ratio
    other_ratio: Ratio
    count: Count
    drifted: bool
    bins: CategoricalBins | None = None


class Thresholds(_Strict):
    """The window's one set of drift thresholds (``detectors.calibration.thresholds``): a feature drifts when
    ``psi > psi`` or ``ks_d > ks_d``, never with fewer than ``min_events`` scored events."""

    psi: float
    ks_d: float
    psi_critical: float
    ks_critical: float
    psi_floor: float
    ks_floor: float
    alpha: float
    alpha_per_test: float
    tests: Count
    window_events: Count
    reference_count: Count
    ks_reference_points: Count
    bins: Count
    epsilon: float
    min_events: Count
    min_labels: Count
    min_positives: Count


class Freshness(_Strict):
    """Event-time lag quantiles (seconds; within 5.9% for lags in [1 ms, 1e6 s]) over ``count`` events."""

    lag_p50_s: float
    lag_p95_s: float
    count: Count


class ScoreStats(_Strict, omit_defaults=True):
    """The fraud scores against the training score distribution, and the predicted fraud rate (share of
    scores >= ``threshold``) against the reference rate."""

    psi: NonNegative
    ks_d: NonNegative
    ks_pvalue: NonNegative
    mean: float
    reference_mean: float
    count: Count
    threshold: float | None
    predicted_fraud_rate: Ratio | None
    reference_fraud_rate: Ratio | None
    fraud_rate_change: float | None
    drifted: bool
    bins: NumericBins | None = None


class ConceptReference(_Strict):
    """The model's own metrics on its test slice (``metadata.json["metrics"]["test"]``)."""

    precision: float | None
    recall: float | None
    f1: float | None
    auprc: float | None


class PerformanceDrop(_Strict):
    """``(reference - current) / reference``; ``None`` when either is unknown or the labels are too few
    (``thresholds.min_labels`` labelled events, ``thresholds.min_positives`` in the metric's denominator)."""

    precision: float | None
    recall: float | None


class Concept(_Strict, omit_defaults=True, kw_only=True):
    """The window's labelled events (delayed labels joined to their scores): confusion counts at the model
    threshold, precision, recall, mean Brier score and error rate (``None`` when undefined), the model's
    reference figures (absent when unknown) and the drop against them
    (:func:`detectors.concept.concept_section`). The aggregator adds ``performance`` (the window, the last
    labels and the last seconds next to the test slice), ``detectors`` (river's, per model version) and
    ``estimate`` (label-free, from calibrated probabilities): :class:`detectors.health.ModelHealth`."""

    labelled: Count
    precision: float | None
    recall: float | None
    brier: float | None
    error_rate: float | None
    tp: Count
    fp: Count
    fn: Count
    tn: Count
    reference: ConceptReference | None = None
    performance_drop: PerformanceDrop
    # added by the aggregator (detectors.health.ModelHealth; absent in window_statistics' own output)
    performance: ConceptPerformance | None = None
    detectors: ConceptDetectors | None = None
    estimate: Estimate | None = None


class FeatureAttribution(_Strict):
    """One input feature's exact TreeSHAP contribution (log-odds) over the window's sample: its mean and
    mean ``|contribution|``, against the same figures on the training slice (``None`` when the model's
    profile has no reference); ``change`` and ``abs_change`` are the differences (window - reference);
    ``stderr``: the standard error of ``change`` (both samples' means; of the window's mean without a
    reference), which also bounds that of ``abs_change``; ``z``: ``change / stderr`` (capped at 1e6);
    ``share``: ``change`` over the score's change (``None`` when the score did not move by ``1e-9``)."""

    mean: float
    mean_abs: NonNegative
    stderr: NonNegative
    reference_mean: float | None
    reference_mean_abs: float | None
    change: float | None
    abs_change: float | None
    share: float | None
    z: float | None


class Attribution(_Strict):
    """What moved the score: per input feature (a categorical column's one-hot features summed) the mean
    exact TreeSHAP contribution over a seeded, bounded sample of the window's scored events
    (:func:`detectors.attribution.attribution_section`). The mean margin (log-odds) is ``base_value`` plus
    the sum of the means, so ``score_change`` (the window's mean margin minus the training slice's) is the
    sum of the features' ``change``. ``ranking``: the features by ``|change|``, largest first (functions
    of event time left out: the profile's ``excluded``); ``moved``: those of them whose change is
    significant (``|z| >= detectors.attribution.MOVED_Z``)."""

    events: Annotated[Count, msgspec.Meta(description="scored events explained (the sample)")]
    reference_events: Count | None
    base_value: float
    mean_margin: float
    reference_mean_margin: float | None
    score_change: float | None
    features: dict[str, FeatureAttribution]
    ranking: list[str]
    moved: list[str]


class ShadowComparison(_Strict):
    """The registry's challenger scored in shadow beside the champion (``settings.shadow_scoring``): both
    models' figures on the **same** labelled transactions, those whose labels were joined while this window
    was pending and that both models scored (``labelled``, ``positives`` frauds among them). ``counts``:
    each model's :class:`LabelCounts` on them, so windows pool exactly (the promotion guard's evidence). A
    window whose labels met two challengers (one replaced another) carries the one with the most labels."""

    champion_version: str
    challenger_version: str
    labelled: Count
    positives: Count
    champion: Figures
    challenger: Figures
    champion_counts: LabelCounts
    challenger_counts: LabelCounts


class DriftStats(_Strict, omit_defaults=True):
    """One drift window (the ``drift.stats`` record, keyed by the input topic). See docs/detectors.md for
    every field; every number is finite. ``attribution`` is absent when the window has no sample (the
    worker's ``attribution_sample`` is 0, or its partials predate attribution)."""

    window_id: Annotated[str, msgspec.Meta(pattern="^w[0-9]{6,}$")]
    stream: Annotated[str | None, msgspec.Meta(description="the input topic the window was read from")]
    window: StatsWindow
    model_version: str | None
    features: dict[str, Union[NumericFeature, CategoricalFeature]]
    thresholds: Thresholds
    missing_ratio: Ratio
    schema_error_ratio: Ratio
    dlq_ratio: Ratio
    dlq_by_reason: Annotated[dict[str, Count], msgspec.Meta(
        description="dead-lettered events by reason code (breeboost.rejections.REASONS)")]
    balance_error_ratio: Ratio
    freshness: Freshness
    score: ScoreStats
    concept: Concept
    drifted_features: list[str]
    drift_detected: bool
    attribution: Attribution | None = None
    shadow: ShadowComparison | None = None


_stats_encoder = msgspec.json.Encoder()
_stats_decoder = msgspec.json.Decoder(DriftStats)


def _as_stats(stats: DriftStats | Mapping[str, Any]) -> DriftStats:
    if isinstance(stats, DriftStats):
        return stats
    try:
        return msgspec.convert(stats, DriftStats, str_keys=True)
    except msgspec.ValidationError as e:
        raise RecordError(f"drift.stats: {e}") from None


def encode_stats(stats: DriftStats | Mapping[str, Any]) -> bytes:
    """The bytes of a drift.stats record: ``stats`` (a :func:`detectors.stats.window_statistics` dict, or
    a :class:`DriftStats`) checked against :class:`DriftStats`, then encoded (:class:`RecordError` names
    the first field that does not fit)."""
    return _stats_encoder.encode(_as_stats(stats))


def decode_stats(data: bytes) -> DriftStats:
    """A drift.stats record from its bytes; :class:`RecordError` if it does not match."""
    try:
        return _stats_decoder.decode(data)
    except msgspec.DecodeError as e:
        raise RecordError(f"drift.stats: {e}") from None


def _plain(doc: Any) -> Any:
    """Docstrings as schema descriptions: reST roles and double backticks become plain Markdown."""
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    if isinstance(doc, str):
        for role in (":func:", ":class:", ":data:", ":meth:"):
            doc = doc.replace(role, "")
        return " ".join(doc.replace("``", "`").split())
    return doc


def stats_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a drift.stats record, generated from :class:`DriftStats`.
    Regenerate the shipped file with ``python -m detectors.records > detectors/schema/drift-stats.schema.json``."""
    generated = _plain(msgspec.json.schema(DriftStats))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": STATS_SCHEMA_ID,
            "title": "BreeBoost drift.stats record",
            "description": "One merged drift window, published on `drift.stats` keyed by the input topic. "
                           "Generated from detectors.records.DriftStats.",
            **generated}


def load_stats_schema() -> dict[str, Any]:
    """The shipped schema file (``detectors/schema/drift-stats.schema.json``)."""
    return json.loads(resources.files("detectors").joinpath(STATS_SCHEMA_RESOURCE).read_text("utf-8"))


if __name__ == "__main__":
    print(json.dumps(stats_schema(), indent=2))
