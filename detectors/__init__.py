"""Exact, mergeable window sketches and drift statistics (PSI, KS, chi-square, ...), calibration."""

__all__: list[str] = []
