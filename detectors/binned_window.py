"""A window sketch that also bins its fraud probabilities on the one probability grid (#16).

:class:`BinnedWindowSketch` is a :class:`detectors.window.WindowSketch` whose ``to_dict`` carries
``score_bins``: the window's scored probabilities on the grid of :mod:`detectors.binning`, and those at or
above the threshold apart (:class:`detectors.concept_records.ScoreBins`, sparse). It is what the
label-free estimate (:mod:`detectors.estimate`) reads at the aggregator, so it rides inside the sketch of
the partial: exact, mergeable by adding, and produced by the same update as the rest of the window (one
``bincount`` a chunk). A plain ``WindowSketch.from_dict`` ignores the key; partials of an older worker lack
it (no estimate for their windows).

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 2000)}, {}, rng.beta(1, 20, 2000), threshold=0.5)
>>> a, b = BinnedWindowSketch(profile), BinnedWindowSketch(profile)
>>> a.update_batch({"amount": rng.lognormal(5, 1, 3)}, {}, np.array([0.001, 0.9, 0.2]))
>>> b.update_batch({"amount": rng.lognormal(5, 1, 1)}, {}, np.array([0.95]))
>>> d = a.merge(b).to_dict()["score_bins"]
>>> d["flagged"], sum(d["bins"].values())
({'145': 1, '151': 1}, 4)
>>> BinnedWindowSketch.from_dict(profile, a.to_dict()).to_dict() == a.to_dict()
True
"""
from __future__ import annotations

from typing import Any, Mapping

import msgspec
import numpy as np

from detectors.binning import dense
from detectors.concept_records import ScoreBins, ScoreCounter
from detectors.window import CompiledProfile, WindowSketch

__all__ = ["BinnedWindowSketch", "score_bins_of"]


def score_bins_of(sketch_dict: Mapping[str, Any] | None) -> ScoreBins | None:
    """The :class:`ScoreBins` of a partial's sketch payload (``None``: a sketch without them)."""
    raw = (sketch_dict or {}).get("score_bins")
    if raw is None:
        return None
    return msgspec.convert(raw, ScoreBins, str_keys=True)


class BinnedWindowSketch(WindowSketch):
    """A :class:`WindowSketch` with the window's binned scores (see the module docstring)."""

    def __init__(self, profile: Mapping[str, Any] | CompiledProfile, threshold: float | None = None) -> None:
        super().__init__(profile, threshold)
        self.score_bins = ScoreCounter(self.threshold)

    def update_batch(self, numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray],
                     scores: np.ndarray | None, event_lags_s: np.ndarray | None = None, **kwargs: Any) -> None:
        super().update_batch(numeric, categorical, scores, event_lags_s, **kwargs)
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64).ravel()
            self.score_bins.add(s[np.isfinite(s)])

    def merge(self, other: WindowSketch) -> "BinnedWindowSketch":
        super().merge(other)
        theirs = getattr(other, "score_bins", None)
        if theirs is not None:
            self.score_bins.counts += theirs.counts
            self.score_bins.flagged += theirs.flagged
        return self

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["score_bins"] = msgspec.to_builtins(self.score_bins.record(), str_keys=True)   # JSON keys
        return d

    @classmethod
    def from_dict(cls, profile: Mapping[str, Any] | CompiledProfile, d: Mapping[str, Any]) -> "BinnedWindowSketch":
        s = super().from_dict(profile, d)
        bins = score_bins_of(d)
        if bins is not None:
            s.score_bins.counts, s.score_bins.flagged = dense(bins.bins), dense(bins.flagged)
        return s
