"""Event-time lag quantiles from a fixed, log-spaced, mergeable histogram.

Lags (seconds between an event's time and its processing) are counted in fixed bins: ``(-inf, 1e-3]``,
then 20 bins per decade up to ``1e6`` s, then ``(1e6, +inf)``. Merging is adding counts. A quantile is
reported as the geometric middle of the bin holding the ``ceil(q * n)``-th smallest lag (the
``inverted_cdf`` quantile), so for lags in ``[1e-3, 1e6]`` s the relative error is at most
``10**(1/40) - 1`` (5.9%); lags <= 1 ms (including negative lags from clock skew) report 0.0 and lags
above 1e6 s report 1e6.

>>> h = LagHistogram()
>>> h.update(np.array([0.5, 1.0, 2.0, 4.0, 100.0]))
>>> h.count, round(h.quantile(0.5), 3), round(h.quantile(0.95), 1)
(5, 2.113, 94.4)
>>> LagHistogram().quantile(0.5)
0.0

What a lag is measured against is the clock (:func:`lag_clock`, chosen once by the ``freshness_clock``
setting). :class:`WallClock` (the default): the processing time, so a lag is how long ago the event
happened; live traffic from a stale source or a consumer backlog shows up at once. :class:`StreamClock`:
the partition's own watermark, the largest event time seen on it so far (this event included), so a lag
is how far an event arrived behind the stream's newest one. A replay of last month's file in file order
then has lag 0, whatever its age; events that arrive out of order still show how late they are. The
stream clock cannot see a source that is stale as a whole (the whole stream is old), so it is for replays
and backfills, not for live traffic (docs/detectors.md, "Freshness").

>>> clock = StreamClock()
>>> clock.lags(np.array([0, 0, 1, 0]), np.array([100.0, 160.0, 50.0, 130.0]), now=2e9).tolist()
[0.0, 0.0, 0.0, 30.0]
>>> clock.lags(np.array([0]), np.array([150.0]), now=2e9).tolist()      # the watermark persists: 160
[10.0]
>>> WallClock().lags(np.array([0]), np.array([150.0]), now=200.0).tolist()
[50.0]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from breeboost.settings import FRESHNESS_CLOCKS

__all__ = ["LagHistogram", "LAG_EDGES", "LAG_RELATIVE_ERROR", "FRESHNESS_CLOCKS", "WallClock", "StreamClock",
           "lag_clock"]

LAG_EDGES = 10.0 ** (np.arange(-3 * 20, 6 * 20 + 1) / 20)
#: Largest relative error of a reported quantile inside [1e-3, 1e6] seconds.
LAG_RELATIVE_ERROR = float(10 ** (1 / 40) - 1)
_MIDDLES = np.concatenate([[0.0], np.sqrt(LAG_EDGES[:-1] * LAG_EDGES[1:]), [LAG_EDGES[-1]]])


class LagHistogram:
    """Counts of lags in :data:`LAG_EDGES` bins (NaN lags are ignored)."""

    def __init__(self) -> None:
        self._counts = np.zeros(LAG_EDGES.size + 1, dtype=np.int64)

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def counts(self) -> np.ndarray:
        return self._counts.copy()

    def update(self, lags: np.ndarray) -> None:
        x = np.asarray(lags, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if x.size:
            self._counts += np.bincount(np.searchsorted(LAG_EDGES, x, "left"), minlength=self._counts.size)

    def merge(self, other: "LagHistogram") -> None:
        self._counts += other._counts

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0.0 for an empty histogram)."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        n = self.count
        if n == 0:
            return 0.0
        rank = max(int(np.ceil(q * n)), 1)
        return float(_MIDDLES[int(np.searchsorted(np.cumsum(self._counts), rank, "left"))])

    def to_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero(self._counts)
        return {"i": nz.tolist(), "c": self._counts[nz].tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LagHistogram":
        h = cls()
        h._counts[np.asarray(d["i"], dtype=np.int64)] = np.asarray(d["c"], dtype=np.int64)
        return h


class WallClock:
    """Lags against the processing time: ``now - event_time``."""

    name = "wall"

    def lags(self, partitions: np.ndarray, event_times: np.ndarray, now: float) -> np.ndarray:
        """The lag of each event (``partitions``: each event's input partition, unused here)."""
        return now - event_times

    def forget(self, partitions: Any) -> None:
        """Nothing to forget: the wall clock has no state."""


class StreamClock:
    """Lags against each partition's watermark (its largest event time so far; NaN times are skipped).

    Events of one partition must come in offset order (as a consumer reads them); the watermark is a
    running maximum, so an event is compared with the newest one before or at it, never with a later one
    of the same micro-batch (a fast replay of sparse data would otherwise look late by a batch's span).
    """

    name = "stream"

    def __init__(self) -> None:
        self._watermarks: dict[int, float] = {}

    @property
    def watermarks(self) -> dict[int, float]:
        """partition -> its largest event time seen (a copy)."""
        return dict(self._watermarks)

    def lags(self, partitions: np.ndarray, event_times: np.ndarray, now: float) -> np.ndarray:
        t = np.asarray(event_times, dtype=np.float64)
        parts = np.asarray(partitions, dtype=np.int64)
        out = np.empty_like(t)
        for p in np.unique(parts).tolist():
            at = np.flatnonzero(parts == p)
            seen = np.fmax.accumulate(np.concatenate([[self._watermarks.get(p, -np.inf)], t[at]]))
            out[at] = seen[1:] - t[at]
            if np.isfinite(seen[-1]):
                self._watermarks[p] = float(seen[-1])
        return out

    def forget(self, partitions: Any) -> None:
        """Drop the watermarks of revoked partitions (their next owner starts from their events)."""
        for p in partitions:
            self._watermarks.pop(int(p), None)


def lag_clock(mode: str) -> WallClock | StreamClock:
    """The clock of a ``freshness_clock`` setting value (one of :data:`FRESHNESS_CLOCKS`).

    >>> lag_clock("stream").name, lag_clock("wall").name
    ('stream', 'wall')
    """
    if mode not in FRESHNESS_CLOCKS:
        raise ValueError(f"freshness_clock must be one of {', '.join(FRESHNESS_CLOCKS)}, got {mode!r}")
    return StreamClock() if mode == "stream" else WallClock()
