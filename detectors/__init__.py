"""Exact, mergeable window sketches and drift statistics (PSI, KS, chi-square, missing, freshness, score),
calibrated thresholds, the concept section of delayed labels, river concept-drift wrappers and the typed
records of the drift topics. See docs/detectors.md.

Modules: ``profile`` (reference profile), ``window`` (WindowSketch), ``stats`` (drift.stats payload),
``records`` (drift.partials / drift.stats records and their codecs; JSON Schema in ``schema/``),
``calibration`` (thresholds, DetectorConfig), ``psi``, ``ks``, ``sketch``, ``freshness``, ``adwin``,
``page_hinkley``, ``kswin``, ``performance``, ``concept`` (concept section, ConceptMonitor).
"""
from detectors.adwin import AdwinDrift
from detectors.calibration import DetectorConfig
from detectors.concept import ConceptMonitor, concept_section
from detectors.errors import DetectorError, ProfileError, SketchError
from detectors.kswin import KswinDrift
from detectors.page_hinkley import PageHinkleyDrift
from detectors.performance import RollingPerformance
from detectors.profile import build_profile
from detectors.records import (DriftPartial, DriftStats, LabelCounts, Progress, RecordError, decode_partial,
                               decode_stats, encode_partial, encode_stats)
from detectors.stats import window_statistics
from detectors.window import WindowSketch, merge

__all__ = ["AdwinDrift", "ConceptMonitor", "DetectorConfig", "DetectorError", "DriftPartial", "DriftStats",
           "KswinDrift", "LabelCounts", "PageHinkleyDrift", "ProfileError", "Progress", "RecordError",
           "RollingPerformance", "SketchError", "WindowSketch", "build_profile", "concept_section",
           "decode_partial", "decode_stats", "encode_partial", "encode_stats", "merge", "window_statistics"]
