"""The dashboard's charts as plain Vega-Lite specs (dicts), drawn by ``st.vega_lite_chart``.

Written by hand rather than with Altair: building an Altair chart costs ~0.1 s of CPU (it validates
every encoding against the Vega-Lite schema), and the overview redraws four of them at every refresh;
these dicts cost microseconds and render the same.

>>> spec = lines("window", "psi", color="feature", rule=0.1, rule_label="PSI threshold")
>>> spec["layer"][0]["encoding"]["x"]["field"], spec["layer"][1]["mark"]["type"], spec["layer"][2]["encoding"]["text"]
('window', 'rule', {'value': 'PSI threshold 0.1'})
"""
from __future__ import annotations

from typing import Any

__all__ = ["lines", "bars", "timeline", "THRESHOLD_COLOUR"]

THRESHOLD_COLOUR = "#333333"


def _axis(kind: str, fmt: str | None, title: str | None, field: str) -> dict:
    axis: dict[str, Any] = {"title": field if title is None else title}
    if fmt:
        axis["format"] = fmt
    elif kind == "temporal":
        axis.update(format="%H:%M:%S", labelAngle=0, labelOverlap="greedy")
    elif field == "window":
        axis.update(format="d", tickMinStep=1)
    return axis


def _legend() -> dict:
    return {"orient": "bottom", "title": None, "columns": 2, "labelLimit": 260}


def lines(x: str, y: str, color: str | None = None, *, temporal: bool = False, y_format: str | None = None,
          y_domain: list[float] | None = None, dash: tuple[str, list[str]] | None = None,
          colours: list[str] | None = None,
          rule: float | None = None, rule_label: str = "threshold", thresholds: list[dict] | None = None,
          threshold_field: str | None = None, height: int = 260) -> dict:
    """Lines of ``y`` over ``x`` (one per ``color`` value; ``dash``: ``(field, [solid value, dashed value])``),
    with a dashed threshold: one ``rule`` for all, or ``thresholds`` rows (``x``, ``threshold_field``)
    for a threshold per ``x``. Points are marked on window axes only (a time series has hundreds)."""
    kind = "temporal" if temporal else "quantitative"
    enc: dict[str, Any] = {"x": {"field": x, "type": kind, "axis": _axis(kind, None, None, x)},
                           "y": {"field": y, "type": "quantitative", "axis": _axis("quantitative", y_format, None, y)},
                           "tooltip": [{"field": x, "type": kind}, {"field": y, "type": "quantitative"}]}
    if y_domain:
        enc["y"]["scale"] = {"domain": y_domain}
    if color:
        enc["color"] = {"field": color, "type": "nominal", "legend": _legend()}
        if colours:
            enc["color"]["scale"] = {"range": colours}
        enc["tooltip"].append({"field": color, "type": "nominal"})
    if dash:
        enc["strokeDash"] = {"field": dash[0], "type": "nominal", "legend": None,
                             "scale": {"domain": dash[1], "range": [[1, 0], [6, 4]]}}
    layers: list[dict] = [{"mark": {"type": "line", "point": not temporal}, "encoding": enc}]
    if rule is not None:
        label = f"{rule_label} {rule:.3g}"
        ref = {"data": {"values": [{"y": rule}]},
               "encoding": {"y": {"field": "y", "type": "quantitative"}}}
        layers.append({**ref, "mark": {"type": "rule", "strokeDash": [6, 4], "color": THRESHOLD_COLOUR}})
        layers.append({**ref, "mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": THRESHOLD_COLOUR},
                       "encoding": {**ref["encoding"], "x": {"value": 0}, "text": {"value": label}}})
    if thresholds:
        layers.append({"data": {"values": thresholds},
                       "mark": {"type": "line", "strokeDash": [6, 4], "color": THRESHOLD_COLOUR},
                       "encoding": {"x": {"field": x, "type": "quantitative"},
                                    "y": {"field": threshold_field, "type": "quantitative"},
                                    "tooltip": [{"field": x}, {"field": threshold_field}]}})
    return {"height": height, "layer": layers}


def bars(x: str, y: str, color: str, *, x_ordinal: bool = True, sort_field: str | None = None,
         offset: bool = False, y_format: str | None = None, colours: dict[str, str] | None = None,
         x_title: str | None = None, height: int = 260) -> dict:
    """Bars of ``y`` per ``x``, stacked by ``color`` (``offset``: side by side instead)."""
    xenc: dict[str, Any] = {"field": x, "type": "ordinal" if x_ordinal else "nominal",
                            "axis": {"title": x if x_title is None else x_title, "labelAngle": -35,
                                     "labelLimit": 90, "labelOverlap": "greedy"}}
    if sort_field:
        xenc["sort"] = {"field": sort_field}
    cenc: dict[str, Any] = {"field": color, "type": "nominal", "legend": _legend()}
    if colours:
        cenc["scale"] = {"domain": list(colours), "range": list(colours.values())}
    enc: dict[str, Any] = {"x": xenc, "y": {"field": y, "type": "quantitative",
                                            "axis": _axis("quantitative", y_format, None, y)},
                           "color": cenc, "tooltip": [{"field": x}, {"field": color}, {"field": y, "type": "quantitative"}]}
    if offset:
        enc["xOffset"] = {"field": color, "type": "nominal", "sort": list(colours) if colours else None}
    return {"height": height, "mark": {"type": "bar"}, "encoding": enc}


def timeline(colours: dict[str, str], rows: int) -> dict:
    """Bars from ``start`` to ``end`` per ``label``, coloured by ``status``."""
    return {"height": max(60, 32 * rows), "mark": {"type": "bar", "height": 16}, "encoding": {
        "x": {"field": "start", "type": "temporal", "title": "time",
              "axis": {"format": "%H:%M:%S", "labelOverlap": "greedy"}},
        "x2": {"field": "end"},
        "y": {"field": "label", "type": "nominal", "title": None, "axis": {"labelLimit": 320}},
        "color": {"field": "status", "type": "nominal", "legend": {"orient": "bottom"},
                  "scale": {"domain": list(colours), "range": list(colours.values())}},
        "tooltip": [{"field": "label"}, {"field": "status"}, {"field": "severity"},
                    {"field": "start", "type": "temporal", "format": "%H:%M:%S"},
                    {"field": "end", "type": "temporal", "format": "%H:%M:%S"}]}}
