"""The one ordering rule for a window history: ``drift.stats`` payloads read back from the topic or a file.

A history read back comes out of order (the windows of several partitions interleave) and sometimes holds
a window twice (re-published after a worker restart or a rebalance). Every reader (the report, RCA, the
demo) puts it in order with :func:`order_windows`, so they all count and draw the same windows:

* one payload per ``(stream, window index)``; of several copies the one with the most events wins, and
  of copies with as many events the later one (a plain redelivery keeps the last copy);
* payloads without an integer ``window.index`` or without a ``features`` mapping are not windows and are
  dropped;
* the result is in window-index order, then stream name (payloads without ``stream`` are ``"default"``).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["order_windows", "window_index"]


def window_index(payload: Any) -> int | None:
    """The payload's ``window.index`` if it is an integer (not a bool), else ``None``.

    >>> window_index({"window": {"index": 3}}), window_index({"window": {"index": True}}), window_index("x")
    (3, None, None)
    """
    w = payload.get("window") if isinstance(payload, Mapping) else None
    k = w.get("index") if isinstance(w, Mapping) else None
    return k if isinstance(k, int) and not isinstance(k, bool) else None


def order_windows(stats: Iterable[Any]) -> list[dict[str, Any]]:
    """The windows of ``stats`` in index order, one per ``(stream, index)`` (see the module docstring).

    >>> ws = [{"window": {"index": 1, "events": 5}}, {"window": {"index": 0, "events": 3}},
    ...       {"window": {"index": 1, "events": 9}}, {"window": {"index": 1, "events": 9}, "copy": "last"},
    ...       {"window": {}}, {"window": {"index": 0}, "stream": "x"}]
    >>> [(w.get("stream"), w["window"].get("events"), w.get("copy"))
    ...  for w in order_windows([{**w, "features": {}} for w in ws])]
    [(None, 3, None), ('x', None, None), (None, 9, 'last')]
    """
    best: dict[tuple[int, str], Mapping[str, Any]] = {}
    for s in stats:
        k = window_index(s)
        if k is None or not isinstance(s.get("features"), Mapping):
            continue
        key = (k, str(s.get("stream") or "default"))
        if key not in best or _events(s) >= _events(best[key]):
            best[key] = s
    return [dict(best[key]) for key in sorted(best)]


def _events(payload: Mapping[str, Any]) -> int:
    n = payload["window"].get("events")
    return n if isinstance(n, (int, float)) and not isinstance(n, bool) else 0
