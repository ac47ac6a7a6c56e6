"""The vocabulary every incident rule shares: severities, :class:`Bands`, :class:`Breach`, and the defensive
readers of a ``drift.stats`` payload (:func:`number`, :func:`get_path`).

>>> b = Bands.from_mapping({"P1": 0.4, "P2": 0.2}, "bands")
>>> b.classify(0.3), most_severe(["P3", b.classify(0.5)]), number(get_path({"a": {"b": 2}}, "a.b"))
('P2', 'P1', 2.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from incident.errors import PolicyError

__all__ = ["SEVERITIES", "Bands", "Breach", "most_severe", "severity_rank", "get_path", "number", "fmt",
           "share", "percent", "score_movers"]

SEVERITIES = ("P1", "P2", "P3", "P4")


def severity_rank(severity: str) -> int:
    """0 for P1 (most severe) .. 3 for P4.

    >>> sorted(["P3", "P1", "P4"], key=severity_rank)
    ['P1', 'P3', 'P4']
    """
    return SEVERITIES.index(severity)


def most_severe(severities: Iterable[str], default: str = "P4") -> str:
    """The most severe of ``severities`` (``default`` when empty).

    >>> most_severe(["P3", "P2"]), most_severe([])
    ('P2', 'P4')
    """
    return min(severities, key=severity_rank, default=default)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (bools, strings, NaN and inf are not numbers here).

    >>> number(3), number(True), number(float("nan")), number("0.2")
    (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def get_path(doc: Any, path: str) -> Any:
    """``doc["a"]["b"]`` for ``path="a.b"``; ``None`` if any step is missing or not a mapping.

    >>> get_path({"freshness": {"lag_p95_s": 12}}, "freshness.lag_p95_s"), get_path({}, "a.b")
    (12, None)
    """
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


def fmt(v: float | None) -> str:
    """A number for a summary line: 4 significant digits, ``n/a`` for none."""
    return "n/a" if v is None else f"{v:.4g}"


def share(v: float | None) -> str:
    """A ratio as a percentage for a summary line (3 significant digits).

    >>> share(0.1234), share(None)
    ('12.3%', 'n/a')
    """
    return "n/a" if v is None else f"{100 * v:.3g}%"


def percent(v: float | None) -> str:
    """A ratio as a percentage with one decimal, for the plain-words causes of RCA.

    >>> percent(0.2), percent(None)
    ('20.0%', 'n/a')
    """
    return "n/a" if v is None else f"{100 * v:.1f}%"


@dataclass(frozen=True)
class Bands:
    """Lower bounds per severity; a value at or above a bound gets that severity (most severe wins).

    Below every bound (or no value) is ``None``: no breach. A ``P4`` bound is allowed (info-only breaches,
    which open incidents only if ``lifecycle.open_severities`` includes P4).

    >>> b = Bands.from_mapping({"P1": 0.4, "P2": 0.2, "P3": 0.1}, "bands")
    >>> [b.classify(v) for v in (0.5, 0.4, 0.39, 0.1, 0.0999, None)]
    ['P1', 'P1', 'P2', 'P3', None, None]
    """

    bounds: tuple[tuple[str, float], ...]

    @classmethod
    def from_mapping(cls, mapping: Any, where: str) -> "Bands":
        if not isinstance(mapping, Mapping) or not mapping:
            raise PolicyError(f"{where}: expected a table of severity = lower bound, e.g. {{ P1 = 0.4 }}")
        bounds = []
        for sev, bound in mapping.items():
            if sev not in SEVERITIES:
                raise PolicyError(f"{where}: {sev!r} is not one of {', '.join(SEVERITIES)}")
            if number(bound) is None:
                raise PolicyError(f"{where}.{sev}: expected a finite number, got {bound!r}")
            bounds.append((sev, float(bound)))
        bounds.sort(key=lambda sb: severity_rank(sb[0]))
        for (s1, b1), (s2, b2) in zip(bounds, bounds[1:]):
            if b1 < b2:
                raise PolicyError(f"{where}: bound of {s1} ({b1}) is below the bound of {s2} ({b2})")
        return cls(tuple(bounds))

    def classify(self, value: float | None) -> str | None:
        if value is None:
            return None
        for sev, bound in self.bounds:
            if value >= bound:
                return sev
        return None

    def bound(self, severity: str) -> float | None:
        return dict(self.bounds).get(severity)


@dataclass(frozen=True)
class Breach:
    """One incident type breached in one window.

    ``features`` are the affected features (sorted); ``covers_all`` says the breach concerns every
    feature (a schema break); ``evidence`` is JSON-able (per-feature scores, thresholds, ...).
    """

    type: str
    severity: str
    features: tuple[str, ...]
    value: float | None
    summary: str
    evidence: dict = field(default_factory=dict, compare=False)
    covers_all: bool = False

    def covers(self, feature: str) -> bool:
        return self.covers_all or feature in self.features


def score_movers(attribution: Mapping[str, Any] | None, top: int = 8) -> dict | None:
    """What the breach keeps of the window's attribution: the score's change and the features' changes
    (the ``top`` by ranking), enough for :func:`detectors.attribution.describe_change`."""
    if not attribution or number(attribution.get("score_change")) is None:
        return None
    ranking = [k for k in attribution.get("ranking") or [] if isinstance(k, str)][:top]
    feats = attribution.get("features") or {}
    return {"score_change": attribution["score_change"], "ranking": ranking,
            "features": {k: {"change": feats[k].get("change"), "share": feats[k].get("share")}
                         for k in ranking if isinstance(feats.get(k), Mapping)}}
