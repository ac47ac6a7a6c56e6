"""The transactions a worker saw recently: where each was first seen (de-duplication) and how it was scored.

:class:`RecentTransactions` is the one map of recent ids that the scoring stage's de-duplication and the
label join read: one entry per transaction, bounded by ``horizon``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

__all__ = ["RecentMap", "RecentTransactions"]


class RecentTransactions:
    """Where each recent transaction was first seen and how it was scored, in one entry per id: the
    de-duplication check and the delayed-label join read the same entry, so a transaction costs one map
    insert (the largest per-event cost after the model when they were two maps).

    A :class:`RecentMap` keeps id -> sequence number (at least the last ``horizon`` ids); numpy rings of
    ``2 * horizon`` slots keep each sequence number's partition, offset, item (-2: any item of that
    message, the short form of :meth:`streams.scoring.ScoringStage` de-duplication; -1: not in an envelope) and, once scored,
    probability and label. A slot remembers whose it is, so an id whose slot was reused reads as unknown.

    >>> r = RecentTransactions(2)
    >>> r.add_batch(["a", "b"], [3], [40], [0, 0]).tolist(), r.add("c", 3, 41, None)
    ([0, 1], 2)
    >>> r.set_scores(np.array([1, 2]), np.array([0.9, 0.25]), np.array([1, 0]))
    >>> r.find("a"), r.find("c"), r.find("x"), r.isdisjoint(["x", "y"]), r.isdisjoint(["b"])
    ((0, (3, 40)), (2, (3, 41, None)), (-1, None), True, False)
    >>> r.score("a"), r.score("b"), r.score("x")
    (None, (0.9, 1, 3), None)
    """

    def __init__(self, horizon: int) -> None:
        self._ids = RecentMap(horizon)
        size = self._size = 2 * horizon
        self._owner = np.full(size, -1, dtype=np.int64)   # the sequence number a slot holds
        self._partition = np.zeros(size, dtype=np.int32)
        self._offset = np.zeros(size, dtype=np.int64)
        self._item = np.zeros(size, dtype=np.int32)
        self._prob = np.full(size, np.nan)                 # NaN: not scored (rejected, or not yet)
        self._label = np.zeros(size, dtype=np.int8)
        self._next = 0

    def __len__(self) -> int:
        return len(self._ids)

    def isdisjoint(self, ids: list) -> bool:
        return self._ids.isdisjoint(ids)

    def _claim(self, n: int) -> np.ndarray:
        seqs = np.arange(self._next, self._next + n, dtype=np.int64)
        self._next += n
        slots = seqs % self._size
        self._owner[slots] = seqs
        self._prob[slots] = np.nan
        return seqs

    def add_batch(self, ids: list, part_l: list[int], off_l: list[int], origins: list[int]) -> np.ndarray:
        """New distinct ids, each at (partition, offset) of its message ``origins[j]`` (the short form);
        returns their sequence numbers."""
        seqs = self._claim(len(ids))
        slots = seqs % self._size
        origin = np.asarray(origins, dtype=np.int64)
        self._partition[slots] = np.asarray(part_l, dtype=np.int32)[origin]
        self._offset[slots] = np.asarray(off_l, dtype=np.int64)[origin]
        self._item[slots] = -2
        self._ids.update(zip(ids, seqs.tolist()))
        return seqs

    def add(self, tid: str, partition: int, offset: int, item: int | None) -> int:
        """One new id at ``(partition, offset, item)``; returns its sequence number."""
        seq = int(self._claim(1)[0])
        slot = seq % self._size
        self._partition[slot], self._offset[slot] = partition, offset
        self._item[slot] = -1 if item is None else item
        self._ids.update(((tid, seq),))
        return seq

    def _slot(self, tid: Any) -> tuple[int, int]:
        seq = self._ids.get(tid)
        if seq is None:
            return -1, -1
        slot = seq % self._size
        return (seq, slot) if self._owner[slot] == seq else (-1, -1)

    def find(self, tid: Any) -> tuple[int, tuple | None]:
        """``(sequence number, where first seen)``: ``(partition, offset)`` or ``(partition, offset,
        item)``; ``(-1, None)`` for an id not seen within the horizon."""
        seq, slot = self._slot(tid)
        if seq < 0:
            return -1, None
        where = (int(self._partition[slot]), int(self._offset[slot]))
        item = int(self._item[slot])
        return seq, (where if item == -2 else (*where, None if item == -1 else item))

    def set_scores(self, seqs: np.ndarray, prob: np.ndarray, label: np.ndarray) -> None:
        """Record the scores of the entries ``seqs`` (-1: a record without an id, skipped)."""
        ok = seqs >= 0
        if not ok.all():
            seqs, prob, label = seqs[ok], prob[ok], label[ok]
        slots = seqs % self._size
        self._prob[slots] = prob
        self._label[slots] = label

    def score(self, tid: Any) -> tuple[float, int, int] | None:
        """``(probability, label, partition)`` of a recent scored transaction, else ``None``."""
        seq, slot = self._slot(tid)
        if seq < 0 or self._prob[slot] != self._prob[slot]:   # unknown, or never scored (NaN)
            return None
        return float(self._prob[slot]), int(self._label[slot]), int(self._partition[slot])


class RecentMap:
    """A map that remembers at least the last ``horizon`` keys put in it (at most twice as many).

    Two plain dicts, a young and an old generation: when the young one holds ``horizon`` keys it becomes
    the old one and the previous old one is dropped. Batch inserts are one ``dict.update`` (C), where an
    ``OrderedDict`` with per-key eviction cost ~1 µs a key in the hot path.

    >>> m = RecentMap(2)
    >>> m.update([("a", 1), ("b", 2)]); m.update([("c", 3)])
    >>> m.get("a"), m.get("c"), m.isdisjoint(["x", "b"]), len(m)
    (1, 3, False, 3)
    >>> m.update([("d", 4)]); m.get("a"), m.get("b"), m.get("d")
    (None, None, 4)
    """

    def __init__(self, horizon: int) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self._young: dict = {}
        self._old: dict = {}

    def get(self, key: Any, default: Any = None) -> Any:
        v = self._young.get(key)
        if v is None:
            v = self._old.get(key, default)
        return v

    def isdisjoint(self, keys: list) -> bool:
        """No key of ``keys`` is in the map (C-level set operations)."""
        return self._young.keys().isdisjoint(keys) and self._old.keys().isdisjoint(keys)

    def update(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        self._young.update(pairs)
        if len(self._young) >= self.horizon:
            self._old, self._young = self._young, {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def __contains__(self, key: Any) -> bool:
        return key in self._young or key in self._old
