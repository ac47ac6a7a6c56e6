"""Score records, encoded from columns: the bytes of one score message per transaction message.

``encode_scores`` builds each score object from its columns encoded once and joined in C, not from a dict
per event (~1 us an event); ``tests/test_scoring_oracle.py`` checks the bytes against ``orjson.dumps``.
The few rows with reason codes (:func:`encode_reasons`, e.g. the flagged ones) get their ``reasons`` and
``base_value`` spliced in before ``scored_at``; the other rows are built exactly as without reasons.
"""
from __future__ import annotations

from itertools import repeat
from typing import Any

import orjson

__all__ = ["encode_scores", "encode_reasons"]


def _dumped(values: list) -> list[bytes]:
    """``[orjson.dumps(v) for v in values]``, in one call when no encoded value holds a comma (numbers,
    null, most ids): orjson writes a list's items exactly as it writes each alone."""
    whole = orjson.dumps(values)
    parts = whole[1:-1].split(b",")
    return parts if len(parts) == len(values) else list(map(orjson.dumps, values))


def encode_reasons(rows: list[int], reasons: list[bytes | list[dict]], base_values: list[float]) -> dict[int, bytes]:
    """Row -> the ``,"reasons":[...],"base_value":...`` fields of its score object (``reasons``: each row's
    reasons, as their JSON, :meth:`models.explain.Reasons.encoded`, or as the list to encode).

    >>> encode_reasons([2], [[{"feature": "amount", "value": 9.5, "contribution": 1.25}]], [-7.5])
    {2: b',"reasons":[{"feature":"amount","value":9.5,"contribution":1.25}],"base_value":-7.5'}
    """
    dumps = orjson.dumps
    return {r: b',"reasons":' + (rs if isinstance(rs, bytes) else dumps(rs)) + b',"base_value":' + b
            for r, rs, b in zip(rows, reasons, _dumped(base_values))}


def encode_scores(tids: list, prob: list, label: list, origin: list[int], item: list, lat_ms: list,
                  part: list[int], off: list[int], threshold: float, version: str, now: float,
                  firsts: list[int] | None = None, extra: dict[int, bytes] | None = None) -> list[bytes]:
    """The score messages of a batch: for each run of rows from one message (``origin[j]`` is row
    ``j``'s message index), the score object of a single-transaction message (``item`` None), or the
    array of score objects of an envelope. Each object is exactly ``orjson.dumps`` of
    ``{"transaction_id", "fraud_probability", "fraud_label", "threshold", "model_version", "latency_ms",
    "partition", "offset", "item", "scored_at"}`` (tests/test_pipeline_fastpath.py checks byte equality),
    but built from each column encoded once and joined in C, not from a dict per event (~1 us an event).
    ``lat_ms``, ``part``, ``off`` are per message; ``firsts``, if given, the first row of each run;
    ``extra``: row -> bytes spliced in before ``"scored_at"`` (:func:`encode_reasons`).

    >>> encode_scores(["t1", "t2", "t3"], [0.25, 0.5, 1.0], [0, 1, 1], [0, 1, 1], [None, 0, 2], [1.5, None],
    ...               [3, 3], [41, 42], 0.5, "v1", 7.0)[1]
    b'[{"transaction_id":"t2","fraud_probability":0.5,"fraud_label":1,"threshold":0.5,"model_version":"v1","latency_ms":null,"partition":3,"offset":42,"item":0,"scored_at":7.0},{"transaction_id":"t3","fraud_probability":1.0,"fraud_label":1,"threshold":0.5,"model_version":"v1","latency_ms":null,"partition":3,"offset":42,"item":2,"scored_at":7.0}]'
    """
    n = len(prob)
    if not n:
        return []
    dumps = orjson.dumps
    start, prob_key = b'{"transaction_id":', b',"fraud_probability":'
    mid = b',"threshold":' + dumps(threshold) + b',"model_version":' + dumps(version) + b',"latency_ms":'
    by_label = (b',"fraud_label":0' + mid, b',"fraud_label":1' + mid)
    lat_b, part_b, off_b = _dumped(lat_ms), _dumped(part), _dumped(off)
    end = b',"scored_at":' + dumps(now) + b"}"
    if item.count(None) == n:   # single-transaction messages: one object each, one join each
        tail: Any = repeat(b',"item":null' + end)
        if extra:
            tail = [b',"item":null' + end] * n
            for j, fields in extra.items():
                tail[j] = b',"item":null' + fields + end
        return list(map(b"".join, zip(repeat(start), _dumped(tids), repeat(prob_key), _dumped(prob),
                                      map(by_label.__getitem__, label), map(lat_b.__getitem__, origin),
                                      repeat(b',"partition":'), map(part_b.__getitem__, origin),
                                      repeat(b',"offset":'), map(off_b.__getitem__, origin), tail)))
    per_msg = list(map(b"".join, zip(lat_b, repeat(b',"partition":'), part_b, repeat(b',"offset":'), off_b,
                                     repeat(b',"item":'))))
    # envelopes: the pieces of every row interleaved in one list (slice assignments, C), one join a message
    rows = [end + b"," + start] * (7 * n)
    rows[0::7] = _dumped(tids)
    rows[1::7] = [prob_key] * n
    rows[2::7] = _dumped(prob)
    rows[3::7] = map(by_label.__getitem__, label)
    rows[4::7] = map(per_msg.__getitem__, origin)
    rows[5::7] = _dumped(item)
    extra = extra or {}
    for j, fields in extra.items():     # the row's closing piece (the last row of a run closes below)
        rows[7 * j + 6] = fields + rows[7 * j + 6]
    close = end + b"]"
    if firsts is None:
        firsts = [0] + [j for j in range(1, n) if origin[j] != origin[j - 1]]
    out = []
    for a, b in zip(firsts, firsts[1:] + [n]):
        last = extra.get(b - 1, b"")
        if item[a] is None:
            out.append(start + b"".join(rows[7 * a:7 * b - 1]) + last + end)
        else:
            out.append(b"[" + start + b"".join(rows[7 * a:7 * b - 1]) + last + close)
    return out
