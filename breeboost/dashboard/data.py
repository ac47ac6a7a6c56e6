"""Where the pages get their data: one :class:`Snapshot` per refresh, and the actions they can take.

A page never talks to Kafka or a worker itself: it renders a :class:`Snapshot` and calls a
:class:`Source`'s actions. :class:`LiveSource` is the running system (topics, the workers' metrics, the
incident agent's state file, ``breeboost simulate``); :class:`StaticSource` is plain data (tests, docs).

>>> src = StaticSource(Snapshot(windows=[{"window_id": "w000001", "window": {"index": 1}}]))
>>> src.snapshot().windows[0]["window_id"], src.snapshot().has_metrics
('w000001', False)
>>> src.annotate("inc-0123456789ab", "ack", "on it", "alice (dashboard)")["event"], src.calls[-1][0]
('acknowledged', 'annotate')
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from breeboost.dashboard.feeds import TailReader, TopicFollower
from breeboost.dashboard.metrics import MetricsPoint, MetricsScraper
from breeboost.dashboard.simulation import SimulationRunner, SimulationSpec
from breeboost.settings import Settings

__all__ = ["Snapshot", "Source", "LiveSource", "StaticSource", "FLAGGED_MARK", "share", "shared"]

#: The bytes every flagged score object holds (streams.encode writes ``"fraud_label":1`` without spaces):
#: a score message is decoded only when it has them.
FLAGGED_MARK = b'"fraud_label":1'


@dataclass
class Snapshot:
    """Everything the pages show at one refresh. Empty lists mean "nothing there yet"; ``problems`` says
    which source could not be read (topic or endpoint -> message)."""

    taken_at: float = field(default_factory=time.time)
    incident_events: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)           # drift.stats, in window order
    pending: list[dict] | None = None                           # the agent's pending breaches; None: unknown
    metrics: list[MetricsPoint] = field(default_factory=list)   # rates between consecutive scrapes
    metrics_urls: list[str] = field(default_factory=list)
    flagged: list[dict] = field(default_factory=list)           # latest flagged score records, newest first
    scores_seen: int = 0
    simulations: list[dict] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def has_metrics(self) -> bool:
        return bool(self.metrics)


class Source(Protocol):
    """What the pages need from the system."""

    def snapshot(self, scores: bool = False) -> Snapshot: ...

    def annotate(self, incident_id: str, action: str, note: str, author: str) -> dict: ...

    def find_transaction(self, transaction_id: str, whole_topic: bool = False) -> dict[str, list[dict]]: ...

    def start_simulation(self, spec: SimulationSpec) -> dict: ...

    def stop_simulation(self) -> bool: ...


class StaticSource:
    """A :class:`Source` over plain data: actions are recorded in ``calls`` and change nothing else
    (``annotate`` returns the event it would publish)."""

    def __init__(self, snap: Snapshot, transactions: dict[str, dict[str, list[dict]]] | None = None) -> None:
        self.snap = snap
        self.transactions = transactions or {}
        self.calls: list[tuple] = []

    def snapshot(self, scores: bool = False) -> Snapshot:
        return self.snap

    def annotate(self, incident_id: str, action: str, note: str, author: str) -> dict:
        self.calls.append(("annotate", incident_id, action, note, author))
        return {"incident_id": incident_id, "event": "acknowledged" if action == "ack" else "closed",
                "notes": [{"action": action, "text": note, "author": author}]}

    def find_transaction(self, transaction_id: str, whole_topic: bool = False) -> dict[str, list[dict]]:
        self.calls.append(("find_transaction", transaction_id, whole_topic))
        return self.transactions.get(transaction_id, {"scores": [], "dead_letters": []})

    def start_simulation(self, spec: SimulationSpec) -> dict:
        spec.check()
        self.calls.append(("start_simulation", spec))
        return {"scenario": spec.scenario, "running": True}

    def stop_simulation(self) -> bool:
        self.calls.append(("stop_simulation",))
        return False


class LiveSource:
    """The running system: incidents and drift.stats followed whole, scores and dead letters by their tail,
    the workers' ``/metrics`` scraped, the incident agent's state file read for pending breaches."""

    def __init__(self, settings: Settings, metrics_urls: list[str] = (), state_dir: str | None = None,
                 flagged_keep: int = 500, scores_budget: int = 1000, scrape_every_s: float | None = 2.0) -> None:
        self.settings = settings
        self.metrics_urls = list(metrics_urls)
        self.state_path = Path(state_dir) / "incident-state.json" if state_dir else None
        self.incidents = TopicFollower(settings, settings.topic_incidents, keep=20_000).start()
        self.stats = TopicFollower(settings, settings.topic_drift_stats, keep=2_000).start()
        self.scores = TailReader(settings, settings.topic_scores, budget=scores_budget, keep=50_000)
        self.dead_letters = TailReader(settings, settings.topic_dlq, budget=500, keep=10_000)
        self.scraper = MetricsScraper(self.metrics_urls)
        if scrape_every_s:
            self.scraper.start(scrape_every_s)
        self.simulator = SimulationRunner(settings)
        self._flagged: deque[dict] = deque(maxlen=flagged_keep)
        self._scores_seen = 0
        self._lock = threading.Lock()

    def snapshot(self, scores: bool = False) -> Snapshot:
        """The system now. ``scores``: also read the tails of scores and dead letters (only the page that
        shows transactions asks: the others cost the broker nothing at all per refresh)."""
        from breeboost.windows_order import order_windows

        with self._lock:   # one refresh at a time reads the tails (several tabs share them)
            if scores:
                self._read_scores()
                self.dead_letters.poll()
            flagged = sorted(self._flagged, key=lambda r: r.get("scored_at") or 0.0, reverse=True)
            seen = self._scores_seen
        history = self.scraper.scrape()
        problems = {t.topic: t.error for t in (self.incidents, self.stats, self.scores, self.dead_letters) if t.error}
        problems.update({f"metrics {i}": e for i, e in enumerate(self.scraper.errors)})
        return Snapshot(incident_events=self.incidents.records(), windows=order_windows(self.stats.records()),
                        pending=self._pending(), metrics=history.points(), metrics_urls=self.metrics_urls,
                        flagged=flagged, scores_seen=seen, simulations=self.simulator.runs(), problems=problems)

    def _read_scores(self) -> None:
        for raw in self.scores.poll():
            self._scores_seen += raw.count(b'"transaction_id"')
            if FLAGGED_MARK not in raw:
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            for s in doc if isinstance(doc, list) else [doc]:
                if isinstance(s, dict) and s.get("fraud_label") == 1:
                    self._flagged.append(s)

    def _pending(self) -> list[dict] | None:
        if self.state_path is None:
            return None
        from incident.state import StateFile

        try:
            state = StateFile(self.state_path).load() or {}
        except Exception:  # a state file being replaced, or one of another version: show nothing pending
            return []
        return [t for t in (state.get("trackers") or {}).values() if t.get("status") == "pending"]

    def annotate(self, incident_id: str, action: str, note: str, author: str) -> dict:
        from breeboost.commands.incidents import annotate_incident

        return annotate_incident(self.settings, incident_id, action, note, author)

    def find_transaction(self, transaction_id: str, whole_topic: bool = False) -> dict[str, list[dict]]:
        """The score and dead-letter records of ``transaction_id``: among the records the dashboard kept,
        or (``whole_topic``) read from the start of both topics with the one topic reader (slower)."""
        if not whole_topic:
            with self._lock:
                return {"scores": self.scores.find(transaction_id), "dead_letters": self.dead_letters.find(transaction_id)}
        return {"scores": _scan(self.settings, self.settings.topic_scores, transaction_id),
                "dead_letters": _scan(self.settings, self.settings.topic_dlq, transaction_id)}

    def start_simulation(self, spec: SimulationSpec) -> dict:
        return self.simulator.start(spec)

    def stop_simulation(self) -> bool:
        return self.simulator.stop()

    def close(self) -> None:
        """Stop the background readers (the process is ending, or a test is done)."""
        for t in (self.incidents, self.stats, self.scraper):
            t.stop()


_SHARED: list[LiveSource] = []


def share(source: LiveSource) -> LiveSource:
    """Make ``source`` the one every browser session of this server process uses (set before the server
    starts, so its readers and scraper run from start-up, not from the first page view)."""
    _SHARED[:] = [source]
    return source


def shared() -> LiveSource | None:
    return _SHARED[0] if _SHARED else None


def _scan(settings: Settings, topic: str, transaction_id: str, timeout_s: float = 30.0) -> list[dict]:
    from breeboost.kafka_io import read_topic

    needle, out = transaction_id.encode(), []
    for r in read_topic(settings, topic, idle_timeout_s=1.0, timeout_s=timeout_s, topic_wait_s=1.0):
        if r.value and needle in r.value:
            try:
                doc = orjson.loads(r.value)
            except orjson.JSONDecodeError:
                continue
            out.extend(d for d in (doc if isinstance(doc, list) else [doc])
                       if isinstance(d, dict) and d.get("transaction_id") == transaction_id)
    return out
