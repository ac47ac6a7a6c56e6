"""A small base class for streaming concept-drift detectors (river's style: ``update()`` then properties).

Subclasses build the wrapped detector in ``_make()``; the base class counts values and keeps the indices
at which drift was flagged. Constructor arguments are public attributes; state is private and rebuilt by
``_reset()``.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["StreamDetector"]


class StreamDetector:
    """Base of :class:`~detectors.adwin.AdwinDrift`, :class:`~detectors.page_hinkley.PageHinkleyDrift`, ..."""

    name = "detector"

    def __init__(self) -> None:
        self._reset()

    def _make(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset(self) -> None:
        self._detector = self._make()
        self._n = 0
        self._drift = False
        self._detections: list[int] = []

    def update(self, x: float) -> None:
        """Feed one value."""
        self._detector.update(float(x))
        self._drift = bool(self._detector.drift_detected)
        if self._drift:
            self._detections.append(self._n)
        self._n += 1

    def update_many(self, xs: Iterable[float]) -> None:
        """Feed values in order; ``drift_detected`` then tells whether the *last* one raised drift."""
        for x in xs:
            self.update(x)

    @property
    def drift_detected(self) -> bool:
        """Whether the last update raised drift."""
        return self._drift

    @property
    def n_seen(self) -> int:
        return self._n

    @property
    def detections(self) -> tuple[int, ...]:
        """0-based indices of the values at which drift was raised."""
        return tuple(self._detections)

    def summary(self, since: int = 0) -> dict[str, Any]:
        """JSON-able state for the drift.stats ``concept`` object; ``since``: count detections from this index."""
        recent = [i for i in self._detections if i >= since]
        return {"detector": self.name, "n": self._n, "detections": len(recent),
                "last_detection": self._detections[-1] if self._detections else None,
                "drift_detected": bool(recent)}
