"""What one labels partition of the label join holds: scores waiting for their labels, labels waiting for
their scores, both bounded by a horizon by time and by count.

:class:`PendingScores` keeps ``transaction_id -> signed probability`` (:func:`streams.label_route.
signed_scores`) in two generations of plain dicts, like :class:`streams.recent.RecentMap`: inserts are one
``dict.update`` of a routed record's lists (C), a pending transaction costs its id string, one float and a
dict slot (~130 bytes, ``python -m bench``), and the oldest generation goes at once when the young one
holds ``count`` ids, or spans ``horizon_s`` on both clocks: stream time (the event times of the
partition's routed scores) and publish time (when the routed records were published). Both, because
either alone drops labels that are on time: a backfill of old data packs days of event time into minutes
(and the simulator's PaySim steps ~14 h into 100,000 transactions, 20 s at 5k/s), and a stream that
pauses spans minutes of publish time in a second of event time. The count bounds the memory either way.
A joined id stays as :data:`JOINED` until its generation goes, so a second label for it is a
``duplicate``.

>>> s = PendingScores(horizon_s=10.0, count=2)
>>> s.add(["a", "b"], [0.5, -0.75], 100.0, 101.0, at=100.0)
>>> s.take("a"), s.take("a"), s.take("x")
((0.5, 0), 'joined', None)
>>> s.add(["c", "d"], [0.25, 0.1], 102.0, 103.0, at=102.0)      # the young generation was full: a, b grow old
>>> s.add(["e"], [0.3], 104.0, 104.0, at=104.0)                 # old again: a, b are dropped by count
>>> s.take("b"), s.classify(101.0), s.classify(103.5), len(s)
(None, 'expired', None, 3)
>>> t = PendingScores(horizon_s=10.0, count=100)
>>> t.add(["f"], [0.5], 0.0, 0.0, at=0.0)
>>> t.add(["g"], [0.5], 3600.0, 3600.0, at=1.0)   # an hour of event time in a second: f stays
>>> t.add(["h"], [0.5], 7200.0, 7200.0, at=12.0)  # and 10 s of publish time: f grows old (kept, once more)
>>> t.take("f"), t.classify(-50.0)
((0.5, 0), 'late_beyond_horizon')
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["EarlyLabels", "JOINED", "PendingByModel", "PendingScores"]

#: Event-time ranges whose drop reason :meth:`PendingScores.classify` remembers.
MAX_DROP_RANGES = 64

#: The value of a joined id (one shared object: marking costs no allocation).
JOINED = "joined"


class PendingScores:
    """Scores waiting for their labels in one labels partition (see the module docstring)."""

    def __init__(self, horizon_s: float, count: int) -> None:
        if not horizon_s > 0:
            raise ValueError(f"horizon_s must be > 0, got {horizon_s!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        self.horizon_s = horizon_s
        self.count = count
        self._young: dict[str, Any] = {}
        self._old: dict[str, Any] = {}
        self._young_min = math.inf     # event-time range of each generation
        self._young_max = -math.inf
        self._old_max = -math.inf
        self._young_since = math.inf   # publish-time range of the young generation, and newest of the old
        self._young_last = -math.inf
        self._old_last = -math.inf
        self.clock = -math.inf         # stream time: the largest event time routed here
        # what dropped the scores of each event-time range, oldest first: (newest event time, outcome), one
        # entry per run of rolls of the same kind (bounded: the oldest ranges are forgotten)
        self._drops: list[tuple[float, str]] = []
        self.dropped = 0               # ids dropped unjoined

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def add(self, ids: list[str], scores: list[float], t_min: float, t_max: float, at: float) -> None:
        """Scores of one routed record (event times in ``[t_min, t_max]``, published at ``at``, seconds).
        An id already here keeps its entry (a redelivered record must not re-open a joined id)."""
        young = self._young
        if len(young) + len(ids) > self.count:
            self._roll(at)
            young = self._young
        elif (young and max(t_max, self._young_max) - self._young_min >= self.horizon_s
              and at - self._young_since >= self.horizon_s):
            self._roll(at)
            young = self._young
        if young.keys().isdisjoint(ids) and self._old.keys().isdisjoint(ids):
            young.update(zip(ids, scores))
        else:
            for tid, v in zip(ids, scores):
                if tid not in young and tid not in self._old:
                    young[tid] = v
        self._young_min = min(self._young_min, t_min)
        self._young_max = max(self._young_max, t_max)
        self._young_since = min(self._young_since, at)
        self._young_last = max(self._young_last, at)
        self.clock = max(self.clock, t_max)

    def _roll(self, now: float) -> None:
        old = self._old
        if old:
            self.dropped += sum(1 for v in old.values() if v is not JOINED)
            # beyond the horizon on both clocks: time dropped them (whatever bound rolled), else the count did
            beyond = self.clock - self._old_max >= self.horizon_s and now - self._old_last >= self.horizon_s
            why = "late_beyond_horizon" if beyond else "expired"
            if self._drops and self._drops[-1][1] == why:
                self._drops[-1] = (max(self._drops[-1][0], self._old_max), why)
            else:
                self._drops.append((self._old_max, why))
                del self._drops[:-MAX_DROP_RANGES]
        self._old, self._young = self._young, {}
        self._old_max, self._old_last = self._young_max, self._young_last
        self._young_min, self._young_max = math.inf, -math.inf
        self._young_since, self._young_last = math.inf, -math.inf

    def waiting(self) -> int:
        """Ids held that no label joined yet."""
        return sum(1 for v in self._young.values() if v is not JOINED) + \
            sum(1 for v in self._old.values() if v is not JOINED)

    def take(self, tid: str) -> tuple[float, int] | str | None:
        """``(probability, fraud_label)`` of a pending id, marking it joined; :data:`JOINED` for one joined
        before; ``None`` for an id not here."""
        gen = self._young
        v = gen.get(tid)
        if v is None:
            gen = self._old
            v = gen.get(tid)
            if v is None:
                return None
        if v is JOINED:
            return JOINED
        gen[tid] = JOINED
        if v < 0:                      # flagged (streams.label_route.signed_scores); -5e-324: a flagged 0.0
            return (0.0 if v == -5e-324 else -v), 1
        return v, 0

    def classify(self, event_time: float | None) -> str | None:
        """Why a label of a transaction at ``event_time`` finds no score here: ``expired`` (the count bound
        dropped the scores of that time: raise ``label_horizon_count``), ``late_beyond_horizon`` (the time
        horizon dropped them, or it is older than the horizon in stream time and was never here), or
        ``None`` (not known yet: the label may have come before its score)."""
        if event_time is None:
            return None
        for upto, why in self._drops:
            if event_time <= upto:
                return why
        if event_time < self.clock - self.horizon_s:
            return "late_beyond_horizon"
        return None


class PendingByModel:
    """The pending scores of one labels partition, a :class:`PendingScores` per model version that scored
    them: a label is counted for the model that scored its transaction, so the windows of a new champion
    are judged on its own scores, not on the old one's still being labelled (and a challenger's shadow
    scores of the same transaction are counted for it, beside the champion's).

    A version that no longer scores (replaced) keeps its scores until they are beyond the horizon on both
    clocks of the partition (its newest score ``2 * horizon_s`` older than the newest of any version), or
    until ``keep`` newer versions came.

    >>> s = PendingByModel(horizon_s=10.0, count=100)
    >>> s.add("v1", ["a", "b"], [0.5, 0.25], 0.0, 0.0, at=0.0)
    >>> s.add("v2", ["b", "c"], [-0.75, 0.1], 1.0, 1.0, at=1.0)      # b: scored by both (a shadow score)
    >>> s.take("b"), s.take("b"), s.take("x")
    (([('v1', 0.25, 0), ('v2', 0.75, 1)], False), ([], True), ([], False))
    >>> s.add("v2", ["d"], [0.5], 25.0, 25.0, at=25.0)                # v1's newest is 2 horizons old: it goes
    >>> s.versions(), len(s)
    (['v2'], 3)
    """

    def __init__(self, horizon_s: float, count: int, keep: int = 4) -> None:
        self.horizon_s = horizon_s
        self.count = count
        self.keep = keep
        self._stores: dict[str, PendingScores] = {}
        self._last_at: dict[str, float] = {}
        self.dropped = 0               # ids dropped unjoined with a retired version

    def __len__(self) -> int:
        return sum(len(s) for s in self._stores.values())

    def versions(self) -> list[str]:
        return list(self._stores)

    def add(self, version: str, ids: list[str], scores: list[float], t_min: float, t_max: float, at: float) -> None:
        """Scores of one routed record of ``version`` (see :meth:`PendingScores.add`)."""
        store = self._stores.get(version)
        if store is None:
            store = self._stores[version] = PendingScores(self.horizon_s, self.count)
        store.add(ids, scores, t_min, t_max, at)
        self._last_at[version] = max(self._last_at.get(version, at), at)
        if len(self._stores) > 1:
            self._retire(at)

    def _retire(self, at: float) -> None:
        clock = max(s.clock for s in self._stores.values())
        by_age = sorted(self._stores, key=self._last_at.__getitem__)
        for i, v in enumerate(by_age[:-1]):
            old = self._stores[v]
            beyond = old.clock < clock - 2 * self.horizon_s and self._last_at[v] < at - 2 * self.horizon_s
            if beyond or len(by_age) - i > self.keep:
                self.dropped += old.waiting() + old.dropped
                del self._stores[v], self._last_at[v]

    def take(self, tid: str) -> tuple[list[tuple[str, float, int]], bool]:
        """``([(version, probability, fraud_label), ...], joined_before)``: every version that scored ``tid``
        and was waiting for its label (now marked joined), and whether some version had it joined already
        (a duplicate, when the list is empty)."""
        hits: list[tuple[str, float, int]] = []
        joined = False
        for v, store in self._stores.items():
            h = store.take(tid)
            if h is None:
                continue
            if h is JOINED:
                joined = True
            else:
                hits.append((v, h[0], h[1]))
        return hits, joined

    def classify(self, event_time: float | None) -> str | None:
        """:meth:`PendingScores.classify` by the version that scored most recently."""
        if not self._stores:
            return None
        return self._stores[max(self._last_at, key=self._last_at.__getitem__)].classify(event_time)


class EarlyLabels:
    """Labels that came before their scores, waiting at most ``wait_s`` (label arrival time) and at most
    ``count`` of them (the oldest gives way).

    >>> e = EarlyLabels(wait_s=5.0, count=2)
    >>> e.add("a", 1, 10.0), e.add("b", 0, 11.0), e.add("c", 0, 12.0)   # "a" gives way to "c"
    (True, True, True)
    >>> e.pop("b"), e.pop("b"), e.expire(17.5), len(e)
    (0, None, 2, 0)
    """

    def __init__(self, wait_s: float, count: int) -> None:
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        self.wait_s = wait_s
        self.count = count
        self._labels: dict[str, tuple[int, float]] = {}   # insertion order = arrival order
        self.given_up = 0

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, tid: str) -> bool:
        return tid in self._labels

    def add(self, tid: str, label: int, arrived: float) -> bool:
        """Hold a label; ``False`` if one for ``tid`` is held already (a duplicate)."""
        if tid in self._labels:
            return False
        if len(self._labels) >= self.count:
            del self._labels[next(iter(self._labels))]
            self.given_up += 1
        self._labels[tid] = (label, arrived)
        return True

    def pop(self, tid: str) -> int | None:
        """The held label of ``tid`` (removed), or ``None``."""
        held = self._labels.pop(tid, None)
        return None if held is None else held[0]

    def ids(self) -> list[str]:
        return list(self._labels)

    def expire(self, now: float) -> int:
        """Drop the labels held longer than ``wait_s``; returns how many went, with those the count bound
        pushed out since the last call."""
        labels, gone = self._labels, self.given_up
        cutoff = now - self.wait_s
        while labels:
            tid = next(iter(labels))
            if labels[tid][1] > cutoff:
                break
            del labels[tid]
            gone += 1
        self.given_up = 0
        return gone
