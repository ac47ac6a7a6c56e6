"""Exact, mergeable window sketches and drift statistics (PSI, KS, chi-square, missing, freshness, score),
calibrated thresholds, river concept-drift wrappers and the offline report. See docs/detectors.md.

Modules: ``profile`` (reference profile), ``window`` (WindowSketch), ``stats`` (drift.stats payload),
``calibration`` (thresholds), ``psi``, ``ks``, ``sketch``, ``freshness``, ``adwin``, ``page_hinkley``,
``kswin``, ``performance``, ``concept``, ``report``, ``cli``.
"""
from detectors.adwin import AdwinDrift
from detectors.calibration import DetectorConfig
from detectors.concept import ConceptMonitor
from detectors.errors import DetectorError, ProfileError, SketchError
from detectors.kswin import KswinDrift
from detectors.page_hinkley import PageHinkleyDrift
from detectors.performance import RollingPerformance
from detectors.profile import build_profile
from detectors.stats import window_statistics
from detectors.window import WindowSketch, merge

__all__ = ["AdwinDrift", "ConceptMonitor", "DetectorConfig", "DetectorError", "KswinDrift", "PageHinkleyDrift",
           "ProfileError", "RollingPerformance", "SketchError", "WindowSketch", "build_profile", "merge",
           "window_statistics"]
