"""The scoring path's half of the label join: each micro-batch's scores, repartitioned by ``transaction_id``.

Labels are keyed (so partitioned) by ``transaction_id``, transactions by whatever their producer chose
(``nameOrig`` in the simulator): the worker that scores a transaction is usually not the one that reads its
label. :class:`ScoreRoute` puts, for each scored micro-batch, **one** :class:`RoutedScores` record per labels
partition on ``settings.scores_by_id``, on the partition Kafka's default partitioner (murmur2) gives
those ids in the labels topic; a label-join worker reads that topic co-partitioned with ``labels``
(:mod:`streams.label_join`). A record per batch and partition, not per transaction: the scoring path pays
~0.2 µs a transaction for it (``python -m bench``, ``labels`` keys), a per-transaction changelog write
(a Faust table) costs a produced message each (~1-5 µs with aiokafka, ~40 µs through Faust).

>>> import numpy as np
>>> route = ScoreRoute(2).activate()
>>> route.add(["tx-1", "tx-2", "tx-3"], np.array([0.9, 0.1, 0.0]), np.array([1, 0, 0]), [3], 7.0,
...           np.array([5.0, 6.0, 4.0]))
>>> [(p, decode_routed(v).ids, decode_routed(v).values()) for p, _, v in route.take()]
[(0, ['tx-3'], [0.0]), (1, ['tx-1', 'tx-2'], [-0.9, 0.1])]
>>> route.take()
[]
"""
from __future__ import annotations

import asyncio
from operator import itemgetter

import msgspec
import numpy as np

# the vectorised murmur2 of equal-length keys (simulator.partition): one numpy pass for a batch's ids
from simulator.partition import _hash_same_length

__all__ = ["RoutedScores", "ScoreRoute", "decode_routed", "encode_routed", "signed_scores", "label_partitions", "NO_ROUTE"]


class RoutedScores(msgspec.Struct, array_like=True):
    """The scores of one micro-batch whose ids hash to one labels partition.

    ``scores``: each id's probability, negated where the model flagged it (``fraud_label`` 1; a flagged 0.0
    is the smallest negative float), so a pending transaction costs one float in the join
    (:func:`signed_scores`). ``partitions``: the input partitions of the batch; ``event_time_min`` and
    ``event_time_max``: its event-time range (``scored_at`` when the spec has no event time), the join's
    stream clock; ``model_version``: the model that scored them. ``shadow_version`` and ``shadow_scores``
    (signed the same way): the registry's challenger's scores of the same ids, in shadow (empty: none), in
    the same record so the join holds both before any label of these ids meets them."""

    ids: list[str]
    scores: bytes            # float64, little-endian: no float object made on the scoring path
    partitions: list[int]
    event_time_min: float
    event_time_max: float
    scored_at: float
    model_version: str = ""
    shadow_version: str = ""
    shadow_scores: bytes = b""

    def values(self) -> list[float]:
        """The signed probabilities of :attr:`ids`, in order."""
        return np.frombuffer(self.scores, dtype="<f8").tolist()

    def shadow_values(self) -> list[float]:
        """The challenger's signed probabilities of :attr:`ids` (``[]``: not scored in shadow)."""
        return np.frombuffer(self.shadow_scores, dtype="<f8").tolist()


# MessagePack: float64 as 8 bytes, no float formatting (JSON cost ~3x as much to encode a record)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RoutedScores)


def encode_routed(record: RoutedScores) -> bytes:
    return _encoder.encode(record)


def decode_routed(data: bytes) -> RoutedScores:
    """A scores.by_id record; ``msgspec.DecodeError`` if it is not one."""
    return _decoder.decode(data)


#: The stand-in of a flagged transaction scored exactly 0.0 (its sign must say "flagged").
_FLAGGED_ZERO = -5e-324


def signed_scores(probability: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``probability``, negated where ``label`` is 1 (see :class:`RoutedScores`).

    >>> signed_scores(np.array([0.5, 0.25, 0.0]), np.array([1, 0, 1])).tolist()
    [-0.5, 0.25, -5e-324]
    """
    p = np.asarray(probability, dtype=np.float64)
    flagged = np.asarray(label) == 1
    return np.where(flagged, np.minimum(-p, _FLAGGED_ZERO), p)


def label_partitions(ids: list[str], partitions: int) -> np.ndarray:
    """The labels partition of each id: Kafka's default partitioner (murmur2) on its UTF-8 bytes, for a
    whole batch at once (the ids sorted by length, joined into one buffer, hashed a length at a time).

    >>> label_partitions(["C1231006815", "é", "tx-1", "tx-22"], 4).tolist()
    [3, 3, 1, 2]
    """
    n = len(ids)
    if partitions == 1 or not n:
        return np.zeros(n, np.int64)
    lens = np.fromiter(map(len, ids), np.int64, n)
    order = np.argsort(lens, kind="stable")
    raw = "".join(itemgetter(*order.tolist())(ids) if n > 1 else ids).encode()
    if len(raw) != int(lens.sum()):   # a non-ASCII id: the plain (pure Python) murmur2 of each one's bytes
        from aiokafka.partitioner import murmur2

        return np.array([(murmur2(t.encode()) & 0x7FFFFFFF) % partitions for t in ids], np.int64)
    buf = np.frombuffer(raw, dtype=np.uint8)
    sorted_lens = lens[order]
    out = np.empty(n, np.int64)
    starts = np.flatnonzero(np.diff(sorted_lens, prepend=-1))
    pos = 0
    for a, b in zip(starts.tolist(), starts[1:].tolist() + [n]):
        length = int(sorted_lens[a])
        size = (b - a) * length
        h = _hash_same_length(buf[pos:pos + size].reshape(b - a, length))
        out[order[a:b]] = (h % np.uint32(partitions)).astype(np.int64)
        pos += size
    return out


class ScoreRoute:
    """Collect the routed records of scored micro-batches (:meth:`add`, on the scoring path) until the
    route task takes them (:meth:`take`, then :meth:`wait` for more). ``partitions``: of the labels topic.
    Inactive (``add`` costs nothing and keeps nothing) until :meth:`activate`: a process without the route
    task (tests, tools, the oracle) routes nothing."""

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._ready: list[tuple[int, bytes, bytes]] = []
        self._event: asyncio.Event | None = None
        self.records = 0
        self.transactions = 0
        self.active = False

    def activate(self) -> "ScoreRoute":
        """Start routing (the route task, before any batch is scored); returns self."""
        self.active = True
        return self

    def add(self, ids: list, probability: np.ndarray, label: np.ndarray, input_partitions: list[int],
            now: float, event_times: np.ndarray | None = None, model_version: str = "",
            shadow: tuple[str, np.ndarray, np.ndarray] | None = None) -> None:
        """Route a micro-batch's scored transactions (``ids``: their ``transaction_id`` strings; a
        non-string id is not routed: no label can name it) and the ``model_version`` that scored them (a
        worker that reloads its model routes the next batch under the new version); ``shadow``: the
        challenger's ``(version, probability, label)`` of the same rows."""
        if not self.active or not ids:
            return
        if set(map(type, ids)) != {str}:
            keep = [j for j, t in enumerate(ids) if type(t) is str]
            ids = [ids[j] for j in keep]
            probability, label = probability[keep], label[keep]
            event_times = None if event_times is None else event_times[keep]
            shadow = None if shadow is None else (shadow[0], shadow[1][keep], shadow[2][keep])
            if not ids:
                return
        signed = signed_scores(probability, label)
        shadow_version, shadow_signed = (shadow[0], signed_scores(shadow[1], shadow[2])) if shadow else ("", None)
        parts = label_partitions(ids, self.partitions)
        times = event_times if event_times is not None and event_times.size else None
        inputs = sorted(set(input_partitions))
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(self.partitions + 1))
        for p in range(self.partitions):
            rows = order[bounds[p]:bounds[p + 1]]
            if not rows.size:
                continue
            t = times[rows] if times is not None else None
            lo, hi = (float(np.nanmin(t)), float(np.nanmax(t))) if t is not None and np.isfinite(t).any() else (now, now)
            picked = rows.tolist()
            rec = RoutedScores(list(itemgetter(*picked)(ids)) if len(picked) > 1 else [ids[picked[0]]],
                               signed[rows].astype("<f8").tobytes(), inputs, lo, hi, now, model_version,
                               shadow_version,
                               b"" if shadow_signed is None else shadow_signed[rows].astype("<f8").tobytes())
            self._ready.append((p, ids[int(rows[0])].encode(), encode_routed(rec)))
        self.transactions += len(ids)
        if self._event is not None:
            self._event.set()

    def take(self) -> list[tuple[int, bytes, bytes]]:
        """The records routed since the last call: ``(labels partition, key, value)``."""
        out, self._ready = self._ready, []
        self.records += len(out)
        return out

    async def wait(self) -> None:
        """Until :meth:`add` routed something (in the running loop)."""
        if self._event is None:
            self._event = asyncio.Event()
        if not self._ready:
            await self._event.wait()
        self._event.clear()


#: The route of a scoring stage that publishes no scores.by_id (never activated).
NO_ROUTE: ScoreRoute = ScoreRoute(1)
