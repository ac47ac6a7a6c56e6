"""``breeboost report``'s presentation: window statistics over a scored table, incident spans and the
self-contained HTML page (inline SVG, no scripts or network).

- :mod:`breeboost.report.windows`: :func:`report_windows` (scored rows -> drift.stats payloads, as the
  stream computes them) and :func:`summarize`;
- :mod:`breeboost.report.incidents`: :func:`incident_spans` (incident events -> one span per incident on the
  window axis), the severity colours and the statistic that shows each incident type;
- :mod:`breeboost.report.page`: :func:`render_html`, the page.

The window history is put in order by :func:`breeboost.windows_order.order_windows`, the rule every
reader of drift.stats shares.

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 20000)}, {}, rng.beta(1, 20, 20000), threshold=0.5)
>>> amount = np.r_[rng.lognormal(5, 1, 10000), 3 * rng.lognormal(5, 1, 10000)]
>>> stats = report_windows(profile, {"amount": amount}, {}, rng.beta(1, 20, 20000), window=10000)
>>> "<svg" in render_html(stats, summarize(stats))
True
"""
from breeboost.report.incidents import INCIDENT_SIGNALS, SEVERITY_COLORS, incident_spans
from breeboost.report.page import render_html, render_page
from breeboost.report.windows import report_windows, summarize

__all__ = ["INCIDENT_SIGNALS", "SEVERITY_COLORS", "incident_spans", "render_html", "render_page", "report_windows",
           "summarize"]
