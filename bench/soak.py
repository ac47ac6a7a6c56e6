"""Soak: a steady stream with labels and a scenario every few minutes while scoring workers join and leave.

    python -m bench.soak --minutes 30              # the issue's soak: 5,000 events/s, a scenario every 5 min
    python -m bench.soak --short                   # ~45 s, what tests/test_soak.py runs

One embedded broker, one incident agent, ``--workers`` scoring workers to start with. The simulator
publishes at ``--rate`` with labels ``--label-delay`` s late and one scenario (cycling through
:data:`SCENARIOS`) every ``--scenario-every`` s for ``--scenario-s`` s. Every ``--scale-every`` s the fleet
changes: a worker joins, then the newest one leaves, alternately gracefully (SIGTERM) and by kill -9; the
first ``--workers`` workers stay all along, so their RSS is a whole-run curve. Every ``--sample-s`` s it
samples: events produced (acknowledged), consumer lag (produced minus the scoring group's committed
offsets: this broker's "latest" offset is not reliable), each worker's RSS, the broker's RSS, and the p99
of ``breeboost_event_latency_seconds`` over the interval (every worker's histogram, merged).

After publishing it waits for the lag to reach 0, audits the topics (:func:`streams.audit.audit_topics`:
every produced event scored or dead-lettered, nothing both), reads the incidents (each fired one must be
resolved) and counts error log lines of every process. Samples go to ``OUT/samples.jsonl``; the result is
the last stdout line, one JSON object with the per-minute curve (docs/benchmarks.md, "Soak").
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.env import ROOT, BenchEnv, child_env, train_or_load_model

__all__ = ["SoakPlan", "Fleet", "run_soak", "main", "SCENARIOS", "SHORT"]

#: Scenarios in the order the soak runs them (each opens an incident that resolves once it ends).
SCENARIOS = ("amount_scale:factor=3", "missing_fields:fraction=0.2", "fraud_burst:factor=20",
             "type_mix:TRANSFER=0.4", "stale_clock:lag=7200", "balance_corruption:fraction=0.3")


@dataclass(frozen=True)
class SoakPlan:
    """What to run; the defaults are the 30-minute soak of issue 20."""

    minutes: float = 30.0
    rate: float = 5000.0
    partitions: int = 4
    workers: int = 2
    scale_every_s: float = 60.0
    scenario_every_s: float = 300.0
    scenario_s: float = 60.0
    sample_s: float = 5.0
    label_delay_s: float = 2.0
    window_size: int = 20_000
    model_rows: int = 150_000
    drain_timeout_s: float = 120.0         # give up draining after this long without the lag shrinking

    def __post_init__(self) -> None:
        for name in ("minutes", "rate", "scale_every_s", "scenario_every_s", "scenario_s", "sample_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.workers < 1 or self.partitions < 1:
            raise ValueError(f"workers and partitions must be >= 1, got {self.workers}, {self.partitions}")
        if self.scenario_s >= self.scenario_every_s:
            raise ValueError("scenario_s must be below scenario_every_s (calm traffic between scenarios)")

    def scenarios(self) -> list[tuple[str, int, int]]:
        """``(scenario, first event, end event)``: one every ``scenario_every_s`` from the first mark."""
        out, k = [], 1
        while k * self.scenario_every_s < self.minutes * 60:
            start = int(k * self.scenario_every_s * self.rate)
            out.append((SCENARIOS[(k - 1) % len(SCENARIOS)], start, start + int(self.scenario_s * self.rate)))
            k += 1
        return out


#: The short soak of tests/test_soak.py: 20 s of traffic, four scale events (join, leave, join, kill -9), two scenarios.
SHORT = SoakPlan(minutes=1 / 3, rate=1000.0, workers=1, scale_every_s=4.5, scenario_every_s=8.0, scenario_s=4.0,
                 sample_s=1.0, label_delay_s=1.0, window_size=1000, model_rows=20_000, drain_timeout_s=30.0)


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class _Process:
    """One ``breeboost worker`` subprocess logging (JSON, INFO) to its own file."""

    def __init__(self, settings: Any, name: str, role: str, model: str | None, workdir: Path) -> None:
        from breeboost.broker import die_with_parent, free_port

        self.name, self.port = name, free_port()
        self.log_path = workdir / f"{name}.log"
        args = [sys.executable, "-m", "breeboost.cli", "worker", "--role", role, "--metrics-port", str(self.port)]
        args += ["--model", model] if model else ["--state-dir", str(workdir / "incident-state")]
        env = child_env(settings)
        env["BREEBOOST_LOG_LEVEL"] = "INFO"
        self._fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     preexec_fn=die_with_parent)
        self.started = time.monotonic()

    def ready(self) -> bool:
        return '"partitions assigned"' in self.log_path.read_text(errors="replace")

    def stop(self, kill: bool = False, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def latency_buckets(self) -> dict[float, float]:
        """Cumulative counts of ``breeboost_event_latency_seconds`` by upper bound ({} if it does not answer)."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return {}
        return {float(s.labels["le"]): s.value for fam in text_string_to_metric_families(text)
                for s in fam.samples if s.name == "breeboost_event_latency_seconds_bucket"}

    def error_lines(self) -> list[str]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                level = json.loads(line).get("level")
            except (ValueError, AttributeError):
                level = "error" if "Traceback" in line else None
            if level in ("error", "critical"):
                out.append(line[:300])
        return out


class Fleet:
    """The scoring workers: ``join`` one, ``leave`` the newest (gracefully or by kill -9); the first
    ``base`` workers never leave."""

    def __init__(self, settings: Any, model: str, workdir: Path, base: int) -> None:
        self.settings, self.model, self.workdir, self.base = settings, model, workdir, base
        self.live: list[_Process] = []
        self.gone: list[_Process] = []
        self.events: list[dict[str, Any]] = []
        self._n = 0
        self._leaves = 0

    def join(self, t: float) -> None:
        self._n += 1
        self.live.append(_Process(self.settings, f"w{self._n}", "scoring", self.model, self.workdir))
        self.events.append({"t": round(t, 1), "event": "join", "worker": self.live[-1].name})

    def leave(self, t: float) -> None:
        if len(self.live) <= self.base:
            return
        w = self.live.pop()
        kill = self._leaves % 2 == 1
        self._leaves += 1
        code = w.stop(kill=kill)
        self.gone.append(w)
        self.events.append({"t": round(t, 1), "event": "kill -9" if kill else "leave", "worker": w.name,
                            "exit": code})

    def scale(self, t: float) -> None:
        """The next scale event: join while at the base size, else leave."""
        if len(self.live) <= self.base:
            self.join(t)
        else:
            self.leave(t)

    def stop(self) -> None:
        for w in self.live:
            w.stop()
        self.gone += self.live
        self.live = []


def _committed(consumer: Any, settings: Any) -> int:
    from kafka import TopicPartition

    tps = [TopicPartition(settings.topic_transactions, p) for p in range(settings.partitions)]
    return sum(consumer.committed(tp) or 0 for tp in tps)


#: The p99 when it lies above the histogram's top finite bucket (JSON has no Infinity).
OVER_TOP = "over_top_bucket"


def _p99(prev: dict[str, dict[float, float]], now: dict[str, dict[float, float]]) -> float | None:
    """p99 (seconds, the upper bound of its bucket) of the latencies observed between two scrapes;
    :data:`OVER_TOP` above the top finite bucket, ``None`` without observations."""
    merged: dict[float, float] = {}
    for name, buckets in now.items():
        before = prev.get(name, {})
        for le, c in buckets.items():
            merged[le] = merged.get(le, 0.0) + max(0.0, c - before.get(le, 0.0))
    if not merged or merged.get(float("inf"), 0.0) <= 0:
        return None
    bounds = sorted(merged)
    total = merged[float("inf")]
    p99 = next(le for le in bounds if merged[le] >= 0.99 * total)
    return p99 if p99 != float("inf") else OVER_TOP


class _Sampler:
    """One sample: produced, lag, RSS of every live worker and the broker, p99 latency over the interval."""

    def __init__(self, settings: Any, broker_pid: int | None, publisher: Any) -> None:
        from breeboost.kafka_io import make_consumer

        self.settings, self.broker_pid, self.publisher = settings, broker_pid, publisher
        self.consumer = make_consumer(settings, group_id=f"{settings.group_id}-scoring", enable_auto_commit=False)
        self._buckets: dict[str, dict[float, float]] = {}

    def sample(self, t: float, fleet: Fleet) -> dict[str, Any]:
        produced = self.publisher.counter.acked["transactions"]
        committed = _committed(self.consumer, self.settings)
        buckets = {w.name: w.latency_buckets() for w in fleet.live}
        p99 = _p99(self._buckets, buckets)
        self._buckets = buckets
        return {"t": round(t, 1), "produced": produced, "committed": committed, "lag": max(0, produced - committed),
                "workers": len(fleet.live), "rss_mb": {w.name: _rss_mb(w.proc.pid) for w in fleet.live},
                "broker_rss_mb": _rss_mb(self.broker_pid) if self.broker_pid else None,
                "p99_latency_s": p99, "labels_sent": self.publisher.counter.acked["labels"]}

    def close(self) -> None:
        self.consumer.close()


def _publisher(settings: Any, plan: SoakPlan) -> Any:
    from simulator.producer import PublishOptions, Publisher
    from simulator.scenarios import parse_scenario

    scenarios = [parse_scenario(spec, start, end, position=i) for i, (spec, start, end) in enumerate(plan.scenarios())]
    return Publisher(settings, PublishOptions(seed=20, duration=plan.minutes * 60, rate=plan.rate,
                                              scenarios=scenarios, label_delay=plan.label_delay_s))


def _wait_ready(procs: list[_Process], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.ready() for p in procs):
        for p in procs:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode}; see {p.log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {timeout_s} s; see {procs[0].log_path}")
        time.sleep(0.2)


def _traffic(plan: SoakPlan, fleet: Fleet, sampler: _Sampler, publisher: Any, samples: list, out: Any) -> float:
    """Publish for the plan's duration, scaling the fleet and sampling; returns the seconds it published."""
    thread = threading.Thread(target=lambda: setattr(publisher, "summary", publisher.run()), daemon=True)
    t0 = time.monotonic()
    thread.start()
    next_scale, next_sample = plan.scale_every_s, plan.sample_s
    while thread.is_alive():
        t = time.monotonic() - t0
        if t >= next_scale:
            fleet.scale(t)
            next_scale += plan.scale_every_s
        if t >= next_sample:
            samples.append(sampler.sample(t, fleet))
            out.write(json.dumps(samples[-1]) + "\n")
            out.flush()
            next_sample += plan.sample_s
        time.sleep(0.05)
    thread.join()
    return time.monotonic() - t0


def _drain(plan: SoakPlan, fleet: Fleet, sampler: _Sampler, t0: float, samples: list, out: Any) -> float | None:
    """Sample until the committed offsets reach what was produced; returns the seconds that took (None: the
    lag stopped shrinking for ``drain_timeout_s``, so the audit after it would count a backlog as missing)."""
    start = last_progress = time.monotonic()
    best = None
    while time.monotonic() - last_progress < plan.drain_timeout_s:
        s = sampler.sample(time.monotonic() - t0, fleet)
        samples.append(s)
        out.write(json.dumps(s) + "\n")
        if s["lag"] == 0:
            return round(time.monotonic() - start, 1)
        if best is None or s["lag"] < best:
            best, last_progress = s["lag"], time.monotonic()
        time.sleep(plan.sample_s)
    return None


def _incidents(settings: Any) -> dict[str, Any]:
    from breeboost.kafka_io import read_topic

    events = [json.loads(r.value) for r in read_topic(settings, settings.topic_incidents, idle_timeout_s=1.0)]
    fired = {e["incident_id"]: e for e in events if e["event"] == "fired"}
    resolved = {e["incident_id"] for e in events if e["event"] == "resolved"}
    return {"fired": len(fired), "resolved": len(resolved & set(fired)),
            "types": sorted(f"{e['type']}/{e['severity']}" for e in fired.values()),
            "unresolved": sorted(f"{fired[i]['type']}/{fired[i]['severity']}" for i in set(fired) - resolved),
            "fired_twice": len({e["event_id"] for e in events if e["event"] == "fired"}) - len(fired)}


def _num(v: Any) -> float:
    return float("inf") if v == OVER_TOP else float(v)


def _out(v: float) -> Any:
    return OVER_TOP if v == float("inf") else v


def _curve(samples: list[dict[str, Any]], base: list[str]) -> list[dict[str, Any]]:
    """Per-minute rows: produced rate, max lag, workers, the base workers' RSS and the broker's, max p99."""
    rows: dict[int, list[dict]] = {}
    for s in samples:
        rows.setdefault(int(s["t"] // 60), []).append(s)
    out, prev = [], (0.0, 0)
    for minute, ss in sorted(rows.items()):
        p99 = [_num(s["p99_latency_s"]) for s in ss if s["p99_latency_s"] is not None]
        span = max(ss[-1]["t"] - prev[0], 1e-9)
        out.append({"minute": minute, "events_per_s": round((ss[-1]["produced"] - prev[1]) / span, 1),
                    "lag_max": max(s["lag"] for s in ss), "workers": sorted({s["workers"] for s in ss}),
                    "rss_mb": {n: ss[-1]["rss_mb"].get(n) for n in base}, "broker_rss_mb": ss[-1]["broker_rss_mb"],
                    "p99_latency_s_max": _out(max(p99)) if p99 else None})
        prev = (ss[-1]["t"], ss[-1]["produced"])
    return out


def _slope_mb_per_min(samples: list[dict[str, Any]], name: str) -> float | None:
    """Least-squares RSS slope of one worker over the second half of the run (after warm-up)."""
    pts = [(s["t"], s["rss_mb"][name]) for s in samples if s["rss_mb"].get(name) is not None]
    pts = pts[len(pts) // 2:]
    if len(pts) < 3:
        return None
    t, r = np.array(pts).T
    return round(float(np.polyfit(t / 60.0, r, 1)[0]), 2)


def _summarise(plan: SoakPlan, fleet: Fleet, samples: list, publisher: Any, seconds: float, drained: float | None,
               audit: Any, incidents: dict[str, Any]) -> dict[str, Any]:
    base = [f"w{i + 1}" for i in range(plan.workers)]
    procs = fleet.gone
    lags = [s["lag"] for s in samples]
    p99 = [_num(s["p99_latency_s"]) for s in samples if s["p99_latency_s"] is not None]
    summary = getattr(publisher, "summary", {})
    errors = {p.name: p.error_lines() for p in procs}
    return {
        "bench": "soak", "plan": asdict(plan), "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
        "published_s": round(seconds, 1), "produced": summary.get("acked"), "failed": summary.get("failed"),
        "rate": round(summary.get("acked", 0) / seconds, 1) if seconds else None,
        "labels": summary.get("labels_acked"), "scale_events": fleet.events,
        "lag": {"p50": int(np.median(lags)) if lags else None, "max": max(lags, default=None),
                "last_during_traffic": next((s["lag"] for s in reversed(samples) if s["t"] <= seconds), None),
                "drained_after_s": drained},
        "p99_latency_s": {"median": _out(float(np.median(p99))) if p99 else None,
                          "max": _out(max(p99)) if p99 else None,
                          "intervals_over_top_bucket": sum(v == float("inf") for v in p99), "intervals": len(p99)},
        "rss_slope_mb_per_min": {n: _slope_mb_per_min(samples, n) for n in base},
        "audit": audit.as_dict() if audit is not None else None,
        # with the lag drained, an event the audit misses is lost; otherwise it may still be in the backlog
        "lost": len(audit.missing) if audit is not None and drained is not None else None,
        "unprocessed_at_audit": len(audit.missing) if audit is not None and drained is None else 0,
        "incidents": incidents,
        "error_lines": {k: len(v) for k, v in errors.items()},
        "error_examples": [line for v in errors.values() for line in v][:5],
        "curve": _curve(samples, base),
    }


def run_soak(plan: SoakPlan, workdir: Path) -> dict[str, Any]:
    """Run one soak (see the module docstring); returns the result dict."""
    from streams.audit import audit_topics

    model = train_or_load_model(plan.model_rows)
    with BenchEnv(workdir) as env:
        s = env.settings(partitions=plan.partitions, window_size=plan.window_size, window_idle_s=2.0)
        agent = _Process(s, "incident", "incident", None, workdir)
        fleet = Fleet(s, model, workdir, plan.workers)
        for _ in range(plan.workers):
            fleet.join(0.0)
        fleet.events.clear()
        samples: list[dict] = []
        try:
            _wait_ready([agent, *fleet.live])
            publisher = _publisher(s, plan)
            sampler = _Sampler(s, env.broker.process.pid, publisher)
            with open(workdir / "samples.jsonl", "w") as out:
                t0 = time.monotonic()
                seconds = _traffic(plan, fleet, sampler, publisher, samples, out)
                drained = _drain(plan, fleet, sampler, t0, samples, out)
            sampler.close()
            produced = publisher.counter.acked["transactions"]
            audit = audit_topics(s, expect=produced, idle_timeout_s=2.0, timeout_s=max(300.0, produced / 5000))
            time.sleep(min(10.0, 5 * plan.window_size / plan.rate))   # the last windows reach the agent
            incidents = _incidents(s)
        finally:
            fleet.stop()
            agent.stop()
        fleet.gone.append(agent)
        return _summarise(plan, fleet, samples, publisher, seconds, drained, audit, incidents)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true", help="the ~45 s soak of tests/test_soak.py")
    for f, default in asdict(SoakPlan()).items():
        p.add_argument("--" + f.replace("_", "-"), type=type(default), default=None, metavar=f.split("_")[-1].upper(),
                       help=f"(default {default}; --short: {getattr(SHORT, f)})")
    p.add_argument("--out", default=None, help="directory for the logs and samples.jsonl (default: a temp dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = _parser().parse_args(argv)
    base = SHORT if args.short else SoakPlan()
    changes = {f: getattr(args, f) for f in asdict(base) if getattr(args, f) is not None}
    plan = SoakPlan(**{**asdict(base), **changes})
    workdir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bb-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_soak(plan, workdir)
    result["workdir"] = str(workdir)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    ok = result["lost"] == 0 and result["failed"] == 0 and result["audit"]["ok"]   # lost None: never drained
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
