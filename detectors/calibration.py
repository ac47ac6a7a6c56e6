"""Drift thresholds with an error-rate basis: window size, bins, reference size and number of tests.

Under H0 (the window is drawn from the reference distribution) with bin proportions ``r`` estimated from
``M`` reference values and ``c`` from ``n`` window values, ``c_i - r_i`` has variance
``r_i (1 - r_i) (1/n + 1/M)``, and PSI (``sum (c - r) ln(c/r)``) equals Pearson's ``sum (c - r)^2 / r`` to
second order. Hence ``PSI / (1/n + 1/M) ~ chi2(B - 1)`` approximately, and the critical PSI at per-test
level ``a`` is ``chi2.isf(a, B - 1) * (1/n + 1/M)``. KS uses the Kolmogorov distribution as in
``ks_2samp(method='asymp')`` (``m`` = reference sample size). Every test in a window (PSI and KS per numeric
feature, PSI per categorical feature, PSI and KS of the score) gets ``a = alpha / k`` (Bonferroni), so the
family-wise false-alarm rate per window is at most ``alpha`` (default 0.1%).

A practical floor then stops trivial shifts from paging on large windows (where any shift becomes
"significant"): a feature drifts when ``psi > max(psi_floor, critical PSI)`` or ``ks_d > max(ks_floor,
critical D)``. Defaults: ``psi_floor = 0.1``, ``ks_floor = 0.1``. Set the floors to 0 for the pure test.

>>> t = thresholds(n=10_000, reference_count=100_000, ks_points=2000, bins=10, tests=30)
>>> t["psi"], round(t["psi_critical"], 5), t["ks_d"], round(t["ks_critical"], 4)
(0.1, 0.00401, 0.1, 0.0573)
>>> thresholds(n=100, reference_count=100_000, ks_points=2000, bins=10, tests=30)["psi"] > 0.1
True
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from breeboost.settings import Settings
from detectors.ks import ks_critical
from detectors.psi import EPSILON

__all__ = ["DetectorConfig", "psi_critical", "thresholds"]


@dataclass(frozen=True)
class DetectorConfig:
    """Knobs of the drift decision (defaults are the calibrated ones; see docs/detectors.md).

    The worker and ``breeboost report`` build it from the ``BREEBOOST_DETECTOR_*`` settings
    (:meth:`from_settings`); every field has one setting of the same name.

    >>> DetectorConfig.from_settings(Settings.from_env({"BREEBOOST_DETECTOR_ALPHA": "0.01"})).alpha
    0.01
    >>> DetectorConfig(alpha=2)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be in (0, 1), got 2
    """

    alpha: float = 0.001          # family-wise false-alarm rate per window
    psi_floor: float = 0.1        # smallest PSI that can count as drift, whatever the window size
    ks_floor: float = 0.1         # smallest KS D that can count as drift
    epsilon: float = EPSILON      # PSI floor of bin proportions
    min_events: int = 100         # windows with fewer scored events are reported but never drift
    min_labels: int = 100         # concept: no performance drop from fewer labelled events
    min_positives: int = 20       # concept: nor from fewer positives (recall) / predicted positives (precision)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        for name in ("psi_floor", "ks_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.epsilon < 0.01:
            raise ValueError(f"epsilon must be in (0, 0.01), got {self.epsilon!r}")
        for name in ("min_events", "min_labels", "min_positives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "DetectorConfig":
        """The ``detector_*`` fields of ``settings`` (``BREEBOOST_DETECTOR_ALPHA`` -> ``alpha``, ...)."""
        return cls(**settings.detector_options())

    @classmethod
    def coerce(cls, config: "DetectorConfig | Settings | Mapping[str, Any] | None") -> "DetectorConfig":
        """``None`` -> defaults; a DetectorConfig as is; :class:`Settings` -> :meth:`from_settings`; a mapping:
        its keys that name fields (others are ignored).

        >>> DetectorConfig.coerce({"min_events": 5, "other": 1}).min_events
        5
        """
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, Settings):
            return cls.from_settings(config)
        if isinstance(config, Mapping):
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in config.items() if k in names})
        raise TypeError(f"detector config: expected a DetectorConfig, Settings, a mapping or None, "
                        f"got {type(config).__name__}")


def psi_critical(n: int, reference_count: int, bins: int, alpha: float) -> float:
    """PSI exceeded with probability ~``alpha`` under H0 (``inf``-free: 1e6 when ``n`` or ``bins`` is too small).

    >>> round(psi_critical(10_000, 10**9, 10, 0.001), 5)
    0.00279
    """
    from scipy.special import chdtri   # what chi2.isf calls, without rv_continuous's ~0.1 ms of argument checks

    if n <= 0 or bins < 2:
        return 1e6
    inv_ref = 1.0 / reference_count if reference_count > 0 else 0.0
    return float(chdtri(bins - 1, alpha) * (1.0 / n + inv_ref))


def thresholds(n: int, reference_count: int, ks_points: int, bins: int, tests: int,
               config: DetectorConfig | None = None) -> dict[str, Any]:
    """The ``thresholds`` object of a drift.stats payload (one set for every feature of the window).

    ``n``: scored events in the window; ``reference_count``: smallest reference count over the features;
    ``ks_points``: smallest reference KS sample; ``bins``: largest bin count over the features (the
    conservative choice); ``tests``: number of tests in the window (Bonferroni).
    """
    cfg = config or DetectorConfig()
    tests = max(int(tests), 1)
    per_test = cfg.alpha / tests
    pc = psi_critical(n, reference_count, bins, per_test)
    kc = ks_critical(n, ks_points, per_test)
    return {
        "psi": max(cfg.psi_floor, pc),
        "ks_d": max(cfg.ks_floor, kc),
        "psi_critical": pc,
        "ks_critical": kc,
        "psi_floor": cfg.psi_floor,
        "ks_floor": cfg.ks_floor,
        "alpha": cfg.alpha,
        "alpha_per_test": per_test,
        "tests": tests,
        "window_events": int(n),
        "reference_count": int(reference_count),
        "ks_reference_points": int(ks_points),
        "bins": int(bins),
        "epsilon": cfg.epsilon,
        "min_events": cfg.min_events,
        "min_labels": cfg.min_labels,
        "min_positives": cfg.min_positives,
    }
