"""The differential oracle: the scoring stage's fast paths against a frozen copy of the careful pipeline.

The hot path (decode, dedup, validate, score documents, windows) takes C-level shortcuts when a batch is
clean and falls back to careful per-record code otherwise. These tests run the production processor and
:class:`ReferenceProcessor` -- the pipeline as it was before the fast paths (commit ff298d3, copied below
verbatim and never to be "fixed"; since the worker became stages (#15) it is built on their public names
only) -- over the same messy batches and require the same bytes out: every
score message byte for byte, every dead letter (reason, detail, raw bytes, position), the window partials,
the reason counts, the metrics and the label-join state.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from prometheus_client import CollectorRegistry

from breeboost.settings import Settings
from models.scorer import Scorer
from breeboost.rejections import Rejection
from models.validation import Reject, Validated, validate_records
from models.spec import FeatureSpec
from streams.decode import DecodedBatch, decode_messages, dlq_record
from streams.labels import LabelJoin
from streams.metrics import WorkerMetrics, observe_many
from streams.model import ModelHolder
from streams.recent import RecentMap
from streams.records import PARTIALS_KEY, Message, Msg, Outcome
from streams.stages import WorkerStages
from streams.windowing import WindowStage, balance_mismatch
from tests.test_badinput import MAX_BYTES, payload, transaction
from simulator import encode_events, generate

# ------------------------------------------------------------------------------------------------------
# Frozen reference: streams/decode.py, models/validation.py and StreamProcessor.process at ff298d3.
# ------------------------------------------------------------------------------------------------------
_OK, _MISSING, _WRONG, _NOT_FINITE, _NEG_AMOUNT, _NEG_VALUE, _UNKNOWN, _NOT_OBJECT = range(8)
_CODE_REASON = (None, "missing_field", "wrong_type", "not_finite", "negative_amount", "negative_value",
                "unknown_category", "not_an_object")
_NUMBER_TYPES = frozenset((float, int))
_NUMPY_NUMBERS = (np.integer, np.floating)


def ref_decode_messages(values: list[bytes | None], max_bytes: int) -> DecodedBatch:
    out = DecodedBatch()
    records, origins, items, rejects = out.records, out.origins, out.items, out.rejects
    loads = orjson.loads
    for i, raw in enumerate(values):
        if raw is None:
            rejects.append(Rejection(i, None, "invalid_json", "empty message (null value)"))
            continue
        if len(raw) > max_bytes:
            rejects.append(Rejection(i, None, "oversized", f"{len(raw)} bytes > max_message_bytes={max_bytes}"))
            continue
        try:
            doc = loads(raw)
        except orjson.JSONDecodeError as e:
            rejects.append(Rejection(i, None, "invalid_json", str(e)[:200]))
            continue
        if type(doc) is dict:
            records.append(doc)
            origins.append(i)
            items.append(None)
        elif type(doc) is list:
            if not doc:
                rejects.append(Rejection(i, None, "empty_envelope", "empty JSON array"))
            elif set(map(type, doc)) == {dict}:   # the usual envelope: whole columns at once
                records += doc
                origins += [i] * len(doc)
                items += range(len(doc))
                continue
            for j, item in enumerate(doc):
                if type(item) is dict:
                    records.append(item)
                    origins.append(i)
                    items.append(j)
                else:
                    rejects.append(Rejection(i, j, "not_an_object", f"envelope item is {type(item).__name__}"))
        else:
            rejects.append(Rejection(i, None, "not_an_object", f"JSON {type(doc).__name__}, expected an object"))
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
        if set(map(type, values)) <= {str}:
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


def ref_validate_records(records: Sequence[Any], spec: FeatureSpec) -> Validated:
    """Validate decoded records (normally dicts) against ``spec``; see the module docstring."""
    n = len(records)
    is_obj = [type(r) is dict or isinstance(r, dict) for r in records]
    first = None
    recs: Sequence[Any] = records
    if not all(is_obj):
        first = np.where(np.array(is_obj, dtype=bool), _OK, _NOT_OBJECT).astype(np.int8)
        recs = [r if ok else {} for r, ok in zip(records, is_obj)]

    def get(name: str) -> list:
        return [r.get(name) for r in recs]

    def raw(name: str | None, i: int) -> Any:
        return records[i] if name is None else recs[i].get(name)

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



class _RefRecent(RecentMap):
    """The old label map, read by the production ``join_labels`` through ``score``."""
    score = RecentMap.get


class ReferenceProcessor:
    """``process`` and its helpers as they were at ff298d3, on the production window stage, model holder
    and label join (which reads the old label map)."""

    def __init__(self, scorer: Any, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings, self.metrics, self.scorer, self.spec = settings, metrics, scorer, scorer.spec
        self.model = ModelHolder(scorer, metrics)
        self._seen = RecentMap(200_000)     # id -> (partition, offset, item) where first seen
        self._recent = _RefRecent(500_000)  # id -> (prob, label, partition)
        self.labels = LabelJoin(self._recent, metrics)
        self.windows = WindowStage(self.model, settings, self.labels, metrics)

    def _ship(self, shipped: list, out: Outcome) -> None:
        for partial in shipped:   # the production window stage's typed partials, encoded as plain JSON here
            partial.labels = self.labels.take(partial.partition)
            out.partials.append((PARTIALS_KEY, orjson.dumps(msgspec.to_builtins(partial))))
        if shipped:
            self.metrics.partials_sent.inc(len(shipped))

    def process(self, messages: list[Message], now: float | None = None) -> Outcome:
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        out = Outcome()
        # columns of the batch's messages, read once (Faust's Message attributes are not free)
        keys = [m.key for m in messages]
        part_l = [m.partition for m in messages]
        off_l = [m.offset for m in messages]
        ts_l = [m.timestamp for m in messages]
        decoded = ref_decode_messages([m.value for m in messages], self.settings.max_message_bytes)
        # (message index, item, reason, detail, transaction id, record or None, field)
        rejected: list[tuple[int, int | None, str, str, str | None, Any, str | None]] = [
            (r.message, r.item, r.reason, r.detail, None, None, None) for r in decoded.rejects]
        records, origins, items = self._dedup(decoded.records, decoded.origins, decoded.items, part_l, off_l,
                                              rejected)

        validated = ref_validate_records(records, self.spec)
        for rej in validated.rejects:
            rec = records[rej.position]
            tid = rec.get("transaction_id") if isinstance(rec, dict) else None
            rejected.append((origins[rej.position], items[rej.position], rej.reason, rej.detail,
                             tid if isinstance(tid, str) else None, rec, rej.field))

        accepted = np.asarray(validated.accepted, dtype=np.int64)
        n_ok = int(accepted.size)
        part_of_msg = np.asarray(part_l, dtype=np.int64)
        off_of_msg = np.asarray(off_l, dtype=np.int64)
        if n_ok:
            scored = self.scorer.score_columns(validated.columns)
            prob = np.asarray(scored.probability, dtype=np.float64)
            label = np.asarray(scored.label, dtype=np.int64)
            acc_origin = np.asarray(origins, dtype=np.int64)[accepted]
            self._score_records(validated.columns, prob, label, acc_origin,
                                [items[i] for i in accepted.tolist()], keys, part_l, off_l, ts_l, now, out)
        for origin, item, reason, detail, tid, rec, fld in rejected:
            m = messages[origin]
            raw = m.value if item is None else None
            out.dead_letters.append((m.key, dlq_record(reason, detail, raw, m.topic, m.partition, m.offset,
                                                       transaction_id=tid, item=item, record=rec if raw is None else None)))
            out.dead_letter_partitions.append(m.partition)
            out.reasons[reason] = out.reasons.get(reason, 0) + 1
        if n_ok:
            self._window_all(scored, prob, acc_origin, rejected, part_of_msg, off_of_msg, validated.columns, now, out)
        else:
            self._window_all(None, None, np.empty(0, np.int64), rejected, part_of_msg, off_of_msg, {}, now, out)
        if self.metrics is not None:
            mt = self.metrics
            mt.events.labels("scored").inc(n_ok)
            if rejected:
                mt.events.labels("dead_lettered").inc(len(rejected))
                for reason, c in out.reasons.items():
                    mt.dead_letters.labels(reason).inc(c)
            if n_ok:
                mt.predicted_fraud.inc(int(label.sum()))
            mt.batch_size.observe(n_ok + len(rejected))
            mt.batch_seconds.observe(time.perf_counter() - t0)
            ts = np.asarray([t or 0.0 for t in ts_l], dtype=np.float64)
            observe_many(mt.event_latency, np.maximum(0.0, now - ts[ts > 0]))
        return out

    def _dedup(self, records: list, origins: list[int], items: list, part_l: list[int], off_l: list[int],
               rejected: list) -> tuple[list, list[int], list]:
        """Drop (dead-letter) records whose transaction_id was seen at another position. The common case,
        a batch of new distinct string ids, takes C-level passes only (map, zip, update)."""
        seen = self._seen
        ids = [r.get("transaction_id") for r in records]
        if ids and set(map(type, ids)) == {str} and len(set(ids)) == len(ids) and seen.isdisjoint(ids):
            seen.update(zip(ids, zip([part_l[o] for o in origins], [off_l[o] for o in origins], items)))
            return records, origins, items
        kept_r: list = []
        kept_o: list[int] = []
        kept_i: list = []
        for rec, tid, origin, item in zip(records, ids, origins, items):
            if type(tid) is str:
                where = (part_l[origin], off_l[origin], item)
                prev = seen.get(tid)
                if prev is not None and prev != where:
                    rejected.append((origin, item, "duplicate_id",
                                     f"transaction_id {tid!r} already seen at partition {prev[0]} offset {prev[1]}",
                                     tid, rec, None))
                    continue
                if prev is None:
                    seen.update(((tid, where),))
            kept_r.append(rec)
            kept_o.append(origin)
            kept_i.append(item)
        return kept_r, kept_o, kept_i

    def _score_records(self, columns: dict, prob: np.ndarray, label: np.ndarray, acc_origin: np.ndarray,
                       acc_item: list, keys: list, part_l: list[int], off_l: list[int], ts_l: list,
                       now: float, out: Outcome) -> None:
        """One score message per transaction message, one array of scores per envelope; remember the
        scores for the label join. Built with comprehensions over plain lists (no per-event numpy scalars)."""
        n = prob.size
        id_col = columns.get(self.spec.id) if self.spec.id else None
        tids = [None] * n if id_col is None else [t if t is None or type(t) is str else str(t) for t in id_col.tolist()]
        prob_l, label_l, origin_l = prob.tolist(), label.tolist(), acc_origin.tolist()
        lat_l = [round((now - t) * 1000.0, 3) if t else None for t in ts_l]
        version, threshold = self.scorer.version, float(self.scorer.threshold)
        docs = [{"transaction_id": t, "fraud_probability": p, "fraud_label": y, "threshold": threshold,
                 "model_version": version, "latency_ms": lat_l[o], "partition": part_l[o], "offset": off_l[o],
                 "item": it, "scored_at": now}
                for t, p, y, o, it in zip(tids, prob_l, label_l, origin_l, acc_item)]
        dumps = orjson.dumps
        if acc_item.count(None) == n:        # one transaction per message: one score message each
            out.scores += zip([keys[o] for o in origin_l], map(dumps, docs))
            out.score_partitions += [part_l[o] for o in origin_l]
        else:
            # a batch envelope in, one envelope of scores out (the producer's cost is per message)
            start = 0
            for j in range(1, n + 1):
                if j == n or origin_l[j] != origin_l[start]:
                    o = origin_l[start]
                    out.scores.append((keys[o], dumps(docs[start]) if acc_item[start] is None else dumps(docs[start:j])))
                    out.score_partitions.append(part_l[o])
                    start = j
        recent = self._recent
        if None in tids:
            keep = [j for j, t in enumerate(tids) if t is not None]
            tids = [tids[j] for j in keep]
            prob_l, label_l, origin_l = [prob_l[j] for j in keep], [label_l[j] for j in keep], [origin_l[j] for j in keep]
        recent.update(zip(tids, zip(prob_l, label_l, [part_l[o] for o in origin_l])))

    # -- windows ---------------------------------------------------------------------------------
    def _window_all(self, scored: Any, prob: np.ndarray | None, acc_origin: np.ndarray, rejected: list,
                    part_of_msg: np.ndarray, off_of_msg: np.ndarray, columns: dict, now: float, out: Outcome) -> None:
        """Add the batch's scored and dead-lettered events to their partitions' windows, in offset order,
        so a window boundary inside the batch is crossed exactly once."""
        rej_origin = np.fromiter((r[0] for r in rejected), dtype=np.int64, count=len(rejected))
        origin = np.concatenate([acc_origin, rej_origin])
        if origin.size == 0:
            return
        is_rej = np.concatenate([np.zeros(acc_origin.size, bool), np.ones(rej_origin.size, bool)])
        parts, offs = part_of_msg[origin], off_of_msg[origin]
        size = self.windows.size
        windows = self.windows.windows
        order = np.lexsort((offs, parts))
        key_p, key_w = parts[order], offs[order] // size
        brk = np.flatnonzero((np.diff(key_p) != 0) | (np.diff(key_w) != 0)) + 1
        if scored is not None:
            feats = scored.features
            et_col = self.spec.event_time
            times = np.asarray(columns[et_col], dtype=np.float64) if et_col and et_col in columns else None
            lags = None if times is None else now - times
            mismatch = balance_mismatch(feats)
        shipped: list[dict] = []
        n_acc = acc_origin.size
        for chunk in np.split(order, brk):
            partition = int(parts[chunk[0]])
            w = windows.window(partition, int(offs[chunk].min()), now, shipped)
            w.last_offset = max(w.last_offset, int(offs[chunk].max()))
            acc = chunk[~is_rej[chunk]]
            if acc.size:
                w.sketch.update_batch({k: v[acc] for k, v in feats.numeric.items()},
                                      {k: v[acc] for k, v in feats.categorical.items()},
                                      prob[acc], None if lags is None else lags[acc],
                                      event_times=None if times is None else times[acc],
                                      balance_mismatch=None if mismatch is None else mismatch[acc],
                                      partition=partition)
            rej = chunk[is_rej[chunk]] - n_acc
            if rej.size:
                reasons: dict[str, int] = {}
                missing: dict[str, int] = {}
                for i in rej:
                    reason, fld = rejected[i][2], rejected[i][6]
                    reasons[reason] = reasons.get(reason, 0) + 1
                    if reason == "missing_field" and fld:
                        missing[fld] = missing.get(fld, 0) + 1
                w.sketch.add_rejects(reasons, missing, int(rej.size), partition=partition)
        self._ship(shipped, out)



# ------------------------------------------------------------------------------------------------------
# The comparison
# ------------------------------------------------------------------------------------------------------
NOW = 1_767_225_900.0


def _docs(value: bytes | None) -> list:
    try:
        doc = orjson.loads(value)
    except (TypeError, orjson.JSONDecodeError):
        return []
    return doc if isinstance(doc, list) else [doc]


def _dead_letter(value: bytes) -> dict:
    d = orjson.loads(value)
    d.pop("seen_at")          # wall clock of the dead-lettering
    return d


def _partial(value: bytes) -> dict:
    d = orjson.loads(value)
    d.pop("sent_at", None)    # wall clock of the shipping
    return d


def _metrics(m: WorkerMetrics) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in m.registry.collect() for s in fam.samples
            if not s.name.startswith("breeboost_scoring_batch_seconds") and not s.name.endswith("_created")}


def assert_same_outcome(got: Outcome, want: Outcome) -> None:
    assert got.scores == want.scores            # byte for byte, keys included
    assert got.score_partitions == want.score_partitions
    assert [(k, _dead_letter(v)) for k, v in got.dead_letters] == [(k, _dead_letter(v)) for k, v in want.dead_letters]
    assert got.dead_letter_partitions == want.dead_letter_partitions
    assert got.reasons == want.reasons and list(got.reasons) == list(want.reasons)
    assert [(k, _partial(v)) for k, v in got.partials] == [(k, _partial(v)) for k, v in want.partials]


def run_both(make: Any, batches: list[list[Msg]], labels: list[bytes] = ()) -> tuple[WorkerStages, int]:
    """Feed ``batches`` to the production stages and a reference processor; every outcome must be the same."""
    prod, ref = make(WorkerStages.build), make(ReferenceProcessor)
    for i, batch in enumerate(batches):
        assert_same_outcome(prod.scoring.process(batch, now=NOW + i), ref.process(batch, now=NOW + i))
    assert_same_outcome(prod.windows.tick(NOW + 3600), ref.windows.tick(NOW + 3600))
    label_msgs = [Msg("labels", 0, i, v) for i, v in enumerate(labels)]
    prod.labels.join(label_msgs)
    ref.labels.join(label_msgs)
    assert prod.labels.pending == ref.labels.pending
    assert _metrics(prod.metrics) == _metrics(ref.metrics)
    # what the label join would find for every string id that came in (the reference also kept a
    # non-string id's str() form; the merged map keys string ids only, as de-duplication always did)
    ids = {doc.get("transaction_id") for b in batches for m in b for doc in _docs(m.value)
           if isinstance(doc, dict) and type(doc.get("transaction_id")) is str}
    for tid in ids:
        assert prod.recent.score(tid) == ref._recent.get(tid), tid
    return prod, sum(len(b) for b in batches)


@pytest.fixture(scope="module")
def make(paysim_model):
    scorer = Scorer.load(paysim_model)

    def _make(cls, **kw):
        # the frozen reference has no reason codes and no attribution sample (tests/test_reasons.py tests them)
        base = dict(partitions=2, max_message_bytes=MAX_BYTES, window_size=200, window_idle_s=1.0, reasons="none",
                    attribution_sample=0)
        base.update(kw)
        return cls(scorer, Settings.from_env({}, **base), metrics=WorkerMetrics(CollectorRegistry()))
    return _make


def _layout(values: list[bytes | None], partitions: int = 2, start: int = 0, keys: Any = None) -> list[Msg]:
    """Messages spread over partitions, offsets in order per partition."""
    nxt = [start] * partitions
    out = []
    for i, v in enumerate(values):
        p = i % partitions
        out.append(Msg("transactions", p, nxt[p], v, key=None if keys is None else keys[i], timestamp=NOW - 0.25 - i * 1e-3))
        nxt[p] += 1
    return out


def _clean(n: int, seed: int) -> list[dict]:
    return [orjson.loads(v) for v in encode_events(generate(n, seed=seed), with_label=False, seed=seed)]


def _envelopes(records: list[dict], size: int) -> list[bytes]:
    return [orjson.dumps(records[i:i + size]) for i in range(0, len(records), size)]


def test_clean_envelopes_and_single_messages_match_the_reference(make):
    recs = _clean(3000, seed=5)
    envelopes = _layout(_envelopes(recs[:2000], 500))
    singles = _layout([orjson.dumps(r) for r in recs[2000:]], start=10)
    mixed = envelopes[:1] + singles[:5] + envelopes[1:2]    # redelivered: same positions, not duplicates
    # seen ids at new offsets (duplicates), next to redeliveries and an envelope repeating its own ids
    again = _layout(_envelopes(recs[490:510] + recs[2000:2003], 23) + [orjson.dumps(recs[2999])], start=40)
    again += envelopes[2:3] + singles[7:8] + _layout([orjson.dumps(recs[2500:2503] * 2)], start=60)
    labels = [orjson.dumps({"transaction_id": r["transaction_id"], "isFraud": i % 7 == 0}) for i, r in enumerate(recs)]
    run_both(make, [envelopes, singles, mixed, again, again], labels)


def test_messy_ids_match_the_reference(make):
    """Ids that are not strings, absent, null, repeated within an envelope, across messages and batches,
    or that need JSON escaping (quotes, commas, backslashes, non-ASCII)."""
    recs = _clean(40, seed=6)
    odd = [7, 7.5, None, True, "", "a,b", 'q"uote', "back\\slash", "\u00e9t\u00e9 \U0001F600", "tx-6-3", "tx-6-3",
           ["list"], {"d": 1}, "x" * 300, "tx-6-30"]
    for r, tid in zip(recs, odd):
        r["transaction_id"] = tid
    del recs[len(odd)]["transaction_id"]
    batch1 = _layout(_envelopes(recs[:20], 7) + [orjson.dumps(r) for r in recs[20:]])
    # the same messages again (a redelivery: same positions), then the same ids at new offsets
    batch2 = batch1[:3]
    batch3 = _layout([orjson.dumps(r) for r in recs[:10]], start=100)
    run_both(make, [batch1, batch2, batch3])


def test_messy_values_match_the_reference(make):
    """Every kind of bad field, alone and in envelopes, next to clean records."""
    recs = _clean(60, seed=8)
    spoil = [("amount", None), ("amount", "12.5"), ("amount", -1.0), ("amount", 1e300), ("step", 2 ** 63 - 1),
             ("step", 1e30), ("type", "BITCOIN"), ("type", 5), ("type", None), ("oldbalanceOrg", -3.0),
             ("newbalanceDest", True), ("event_time", "yesterday"), ("event_time", None), ("amount", [1.0]),
             ("newbalanceOrig", {"v": 1}), ("oldbalanceDest", 0), ("amount", 3)]
    for r, (k, v) in zip(recs, spoil):
        r[k] = v
    for r in recs[len(spoil):len(spoil) + 5]:
        del r["amount"]
    for r in recs[len(spoil) + 5:len(spoil) + 8]:
        del r["event_time"]
    raw = [orjson.dumps(r) for r in recs]
    values = (_envelopes(recs[:30], 10) + raw[30:] + [b"[]", b"[1, 2]", b"42", b"null", b"{oops", None, b"",
              raw[31].replace(b'"amount":', b'"amount":NaN,"x":'),
              raw[32].replace(b'"step":', b'"step":1180591620717411303424,"x":'), b"x" * (MAX_BYTES + 1),
              orjson.dumps([recs[40], 3, None, recs[41]])])
    run_both(make, [_layout(values)])


def test_typed_batches_with_rejects_match_the_reference(make):
    """Batches the columnar decoder takes (every field of its JSON type) whose values are still rejected
    (negative, unknown category), with duplicate, null and absent ids and absent event times: the dead
    letters carry the original records, re-read from their messages, as the general path gives them."""
    recs = _clean(80, seed=12)
    spoil = [("amount", -1.0), ("type", "BITCOIN"), ("oldbalanceOrg", -3.0), ("newbalanceDest", -0.5),
             ("transaction_id", None), ("event_time", None), ("amount", 0), ("step", 3.5)]
    for r, (k, v) in zip(recs[3:], spoil):
        r[k] = v
    del recs[20]["transaction_id"]
    del recs[21]["event_time"]
    recs[30]["transaction_id"] = recs[2]["transaction_id"]      # a duplicate inside the first batch
    batch1 = _layout(_envelopes(recs[:40], 9) + [orjson.dumps(r) for r in recs[40:60]])
    again = _layout(_envelopes(recs[5:12], 4) + [orjson.dumps(recs[45])], start=100)   # seen ids, new offsets
    batch3 = _layout([orjson.dumps(r) for r in recs[60:]], start=200) + batch1[:2]       # + a redelivery
    prod = make(WorkerStages.build)
    for batch in (batch1, again, batch3):
        assert prod.scoring.decoder.typed.decode([m.value for m in batch], MAX_BYTES) is not None   # columnar
    run_both(make, [batch1, again, batch3])


def test_timestamps_and_keys_match_the_reference(make):
    """No Kafka timestamp (latency null), no key, a batch of only rejects, an empty batch."""
    recs = _clean(12, seed=9)
    msgs = _layout([orjson.dumps(r) for r in recs[:6]] + _envelopes(recs[6:], 3),
                   keys=[None, b"k", None, b"a", b"b", None, b"e", None])
    msgs[0].timestamp = 0.0
    msgs[6].timestamp = None
    # Kafka's whole-millisecond timestamps, shared by many messages (latencies computed once per value)
    busy = _layout([orjson.dumps(r) for r in _clean(300, seed=10)], start=200)
    for i, m in enumerate(busy):
        m.timestamp = None if i == 150 else 0 if i == 151 else (1_767_225_899_000 + i // 20) / 1000.0 - 1.234567e-4
    run_both(make, [msgs, _layout([b"{", b"[]"], start=50), [], busy])


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(payload(), max_size=12), min_size=1, max_size=4), st.data())
def test_generated_bad_input_matches_the_reference(make, batches, data):
    offset = 0
    msgs = []
    for values in batches:
        batch = _layout(values, start=offset)
        offset += len(values)
        if msgs and msgs[-1] and data.draw(st.booleans()):
            batch += data.draw(st.lists(st.sampled_from(msgs[-1]), max_size=3))   # redelivered messages
        msgs.append(batch)
    run_both(make, msgs)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(st.lists(st.one_of(transaction(), st.none(), st.integers(), st.text(max_size=3)), max_size=25))
def test_validate_records_matches_the_reference(records):
    from models.spec import load_spec

    spec = load_spec()
    got, want = validate_records(records, spec), ref_validate_records(records, spec)
    assert got.rejects == want.rejects and got.accepted.tolist() == want.accepted.tolist() and got.n == want.n
    assert got.columns.keys() == want.columns.keys()
    for k in want.columns:
        assert got.columns[k].dtype == want.columns[k].dtype
        np.testing.assert_array_equal(got.columns[k], want.columns[k])


@settings(max_examples=80, derandomize=True, deadline=None)
@given(st.lists(payload(), max_size=20))
def test_decode_matches_the_reference(values):
    got, want = decode_messages(values, MAX_BYTES), ref_decode_messages(values, MAX_BYTES)
    assert (got.records, got.origins, got.items, got.rejects) == (want.records, want.origins, want.items, want.rejects)


@pytest.mark.parametrize("seed", [0, 1])
def test_validate_records_fast_extraction_matches_the_reference_across_chunks(seed):
    """Thousands of JSON objects (the C-level extraction), a few spoiled in chunks of their own or not."""
    from models.spec import load_spec

    spec = load_spec()
    rng = np.random.default_rng(seed)
    recs = _clean(3000, seed=seed)
    fields = [*spec.required_fields, "transaction_id", "event_time"]
    for i in rng.choice(len(recs), 25, replace=False).tolist():
        name = fields[int(rng.integers(len(fields)))]
        how = int(rng.integers(4))
        if how == 0:
            del recs[i][name]
        else:
            recs[i][name] = [None, "7", float("nan")][how - 1]
    recs[2999]["type"] = "PAYMENT_"   # an unknown category only in the last chunk
    for records in (recs, recs[:1024], recs[1500:1600], [{}], []):
        got, want = validate_records(records, spec), ref_validate_records(records, spec)
        assert got.rejects == want.rejects and got.accepted.tolist() == want.accepted.tolist()
        assert got.columns.keys() == want.columns.keys()
        for k in want.columns:
            assert got.columns[k].dtype == want.columns[k].dtype
            np.testing.assert_array_equal(got.columns[k], want.columns[k])
