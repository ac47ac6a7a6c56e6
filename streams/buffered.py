"""A window sketch that applies scored events in chunks (one drift update per few thousand events), and
keeps the window's attribution sample (:class:`models.explain.EventSample`)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BufferedSketch"]


class BufferedSketch:
    """A window sketch that applies scored events in chunks of at least ``min_events``.

    A drift update costs ~1 ms a call whatever its size (one bin search per feature), which at Faust's
    micro-batches of 50-500 events was the largest fixed cost of a batch. The counts are exact under
    concatenation, so the window is the same; everything that reads the sketch (``to_dict``, which every
    partial goes through) applies the buffer first.

    >>> import numpy as np
    >>> from detectors.profile import build_profile
    >>> from detectors.window import WindowSketch
    >>> rng = np.random.default_rng(0)
    >>> prof = build_profile({"amount": rng.lognormal(5, 1, 2000)}, {}, rng.beta(1, 20, 2000), threshold=0.5)
    >>> direct, buffered = WindowSketch(prof), BufferedSketch(WindowSketch(prof), min_events=1000)
    >>> for _ in range(3):
    ...     x, p = rng.lognormal(5, 1, 300), rng.beta(1, 20, 300)
    ...     direct.update_batch({"amount": x}, {}, p, partition=0)
    ...     buffered.update_batch({"amount": x}, {}, p, partition=0)
    >>> buffered.sketch.count, buffered.to_dict() == direct.to_dict(), buffered.sketch.count
    (0, True, 900)

    With ``sample_size`` (and the ``explainer`` of the model), :meth:`offer` keeps the window's
    ``sample_size`` events of smallest position hash, and :meth:`to_dict` puts this sketch under
    ``"attribution"``: the window stage explains the samples of the partials it ships together, in one
    call, and moves each one's :meth:`attribution` to the partial's own field.
    """

    def __init__(self, sketch: Any, min_events: int = 4096, sample_size: int = 0, explainer: Any = None) -> None:
        if min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {min_events}")
        if sample_size < 0 or (sample_size and explainer is None):
            raise ValueError(f"sample_size must be >= 0 (> 0 needs an explainer), got {sample_size}")
        self.sketch = sketch
        self.min_events = min_events
        self.sample_size = sample_size
        self.explainer = explainer
        self.sample: Any = None
        self._chunks: list[tuple] = []
        self._n = 0

    def offer(self, offsets: np.ndarray, items: np.ndarray, matrix: np.ndarray, positions: np.ndarray,
              partition: int) -> None:
        """Offer scored events to the attribution sample (see :class:`models.explain.EventSample`)."""
        if not self.sample_size:
            return
        if self.sample is None:
            from models.explain import EventSample

            self.sample = EventSample(self.sample_size, partition)
        self.sample.add(offsets, items, matrix, positions)

    def attribution(self) -> Any:
        """The contribution sums of the sample (``None`` without a sample)."""
        if self.sample is None or not len(self.sample):
            return None
        from detectors.records import AttributionSums

        n, total, total_abs, total_sq = self.sample.sums(self.explainer)
        return AttributionSums.of(self.explainer.inputs, n, total, total_abs, total_sq, self.explainer.base_value)

    def update_batch(self, numeric: dict, categorical: dict, scores: Any, event_lags_s: Any = None, *,
                     event_times: Any = None, balance_mismatch: Any = None, partition: int | None = None) -> None:
        self._chunks.append((numeric, categorical, scores, event_lags_s, event_times, balance_mismatch, partition))
        self._n += len(scores) if scores is not None else 1
        if self._n >= self.min_events:
            self.apply()

    def apply(self) -> None:
        """Apply the buffered events in one update per partition (a window has one partition)."""
        chunks, self._chunks, self._n = self._chunks, [], 0
        by_part: dict[Any, list[tuple]] = {}
        for c in chunks:
            by_part.setdefault(c[6], []).append(c)
        for partition, cs in by_part.items():
            if len(cs) == 1:
                num, cat, sc, lag, et, bm, _ = cs[0]
            else:
                def cat_(i: int) -> Any:
                    parts = [c[i] for c in cs]
                    return None if any(x is None for x in parts) else np.concatenate(parts)
                num = {k: np.concatenate([c[0][k] for c in cs]) for k in cs[0][0]}
                cat = {k: np.concatenate([c[1][k] for c in cs]) for k in cs[0][1]}
                sc, lag, et, bm = cat_(2), cat_(3), cat_(4), cat_(5)
            self.sketch.update_batch(num, cat, sc, lag, event_times=et, balance_mismatch=bm, partition=partition)

    def add_rejects(self, *args: Any, **kwargs: Any) -> None:
        self.sketch.add_rejects(*args, **kwargs)

    def to_dict(self) -> dict:
        self.apply()
        d = self.sketch.to_dict()
        if self.sample is not None and len(self.sample):
            d["attribution"] = self
        return d

    def __getattr__(self, name: str) -> Any:   # read-only views (count, events, ...) see every event
        if name.startswith("_") or name in ("sketch", "min_events", "sample_size", "explainer", "sample"):
            raise AttributeError(name)
        self.apply()
        return getattr(self.sketch, name)
