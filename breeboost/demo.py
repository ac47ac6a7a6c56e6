"""``breeboost demo``: the whole system on one machine, on the embedded broker, with a scripted scenario.

broker -> (train a model if none) -> scoring worker + incident agent (separate processes) -> simulator
(calm, then a drift scenario, then calm) -> incidents printed live as they fire and resolve -> summary.
Every child process is tied to this one: Ctrl-C (or its death) stops them all.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from breeboost.broker import EmbeddedBroker, _die_with_parent, free_port
from breeboost.errors import BreeBoostError
from breeboost.logs import configure_logging, log
from breeboost.settings import Settings, env_var

_log = logging.getLogger("breeboost.demo")
BB = [sys.executable, "-m", "breeboost.cli"]


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=150_000, help="transactions to simulate (default 150000)")
    p.add_argument("--rate", type=float, default=5000.0, help="simulator events per second (default 5000)")
    p.add_argument("--scenario", default="amount_scale:factor=3",
                   help="drift scenario NAME[:k=v,...] injected in the middle third (default amount_scale:factor=3; "
                        "see docs/simulator.md)")
    p.add_argument("--scenario-start", type=int, default=None, help="first event of the scenario (default count/3)")
    p.add_argument("--scenario-end", type=int, default=None, help="end of the scenario (default 2*count/3)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--train-count", type=int, default=300_000,
                   help="simulated rows to train on when no model exists (default 300000)")
    p.add_argument("--out", default=None, help="folder for logs, incident log and summary (default demo-run-TIMESTAMP)")
    p.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    p.add_argument("--settle", type=float, default=60.0,
                   help="seconds to wait after the simulator for windows to close and incidents to resolve")


class _Child:
    def __init__(self, name: str, cmd: list[str], logdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def _env(settings: Settings, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env[env_var("bootstrap")] = settings.bootstrap
    env[env_var("partitions")] = str(settings.partitions)
    env[env_var("log_format")] = "json"
    env.update({env_var(k): str(v) for k, v in extra.items()})
    return env


def _print(line: str) -> None:
    print(line, flush=True)


def _tail_incidents(settings: Settings, seen: list[dict], stop: threading.Event) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from breeboost.kafka_io import client_config

    c = KafkaConsumer(**client_config(settings, enable_auto_commit=False, group_id=None))
    parts = c.partitions_for_topic(settings.topic_incidents) or {0}
    c.assign([TopicPartition(settings.topic_incidents, p) for p in parts])
    c.seek_to_beginning()
    while not stop.is_set():
        for recs in c.poll(timeout_ms=300).values():
            for r in recs:
                try:
                    ev = orjson.loads(r.value)
                except orjson.JSONDecodeError:
                    continue
                seen.append(ev)
                feats = ",".join((ev.get("details") or {}).get("affected_features") or [])
                _print(f"  incident {str(ev.get('status', '?')).upper():9s} {ev.get('severity', '?')} "
                       f"{ev.get('type', '?')}{'(' + feats + ')' if feats else ''}: {ev.get('summary', '')}")
    c.close()


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = Path(args.out or f"demo-run-{stamp}").resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    model_dir = Path(settings.model_dir).resolve()
    start = args.scenario_start if args.scenario_start is not None else args.count // 3
    end = args.scenario_end if args.scenario_end is not None else (2 * args.count) // 3
    children: list[_Child] = []
    ports: dict[str, int] = {}
    completed = False
    stop_tail = threading.Event()
    incidents: list[dict] = []
    interrupted = False

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # the demo talks to people on stdout; its own JSON log lines go to a file like every other process's
    configure_logging(settings.log_level, "json", stream=open(outdir / "demo.log", "a"), secrets=settings.secrets())
    _print(f"BreeBoost demo: logs and results in {outdir}")
    broker = EmbeddedBroker(port=args.port, settings=settings, log_file=str(outdir / "broker.log"))
    try:
        broker.start()
        s = broker.settings
        _print(f"[1/5] embedded broker on {broker.bootstrap}, topics created ({s.partitions} partitions)")
        if not (model_dir / "metadata.json").exists():
            _print(f"[2/5] no model in {model_dir}: training one on {args.train_count} simulated transactions ...")
            t0 = time.time()
            train = subprocess.Popen(BB + ["train", "--sim-count", str(args.train_count), "--out", str(model_dir),
                                           "--log-format", "text"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
            with open(outdir / "train.log", "w") as tl:
                for line in train.stdout:   # progress, live
                    tl.write(line)
                    if line.startswith("train:"):
                        _print("      " + line.rstrip())
            if train.wait() != 0:
                raise BreeBoostError(f"training failed (see {outdir / 'train.log'})")
            _print(f"      trained in {time.time() - t0:.0f}s")
        else:
            _print(f"[2/5] using the model in {model_dir}")
        ports = {"worker": free_port(), "incident": free_port()}
        env = _env(s, model_dir=str(model_dir))
        children.append(_Child("worker", BB + ["worker", "--role", "scoring", "--metrics-port", str(ports["worker"])],
                               outdir, env))
        children.append(_Child("incident", BB + ["worker", "--role", "incident", "--metrics-port",
                                                 str(ports["incident"]), "--state-dir", str(outdir / "state"),
                                                 "--incident-log", str(outdir / "incident_log.jsonl")],
                               outdir, env))
        _print(f"[3/5] scoring worker (metrics http://127.0.0.1:{ports['worker']}/metrics) and incident agent "
               f"(metrics http://127.0.0.1:{ports['incident']}/metrics) starting")
        _wait_ready(children, ports)
        tail = threading.Thread(target=_tail_incidents, args=(s, incidents, stop_tail), daemon=True)
        tail.start()
        _print(f"[4/5] simulating {args.count} transactions at {args.rate:.0f}/s; scenario {args.scenario} "
               f"on events [{start}, {end})")
        sim = subprocess.run(BB + ["simulate", "--count", str(args.count), "--rate", str(args.rate),
                                   "--seed", str(args.seed), "--scenario", args.scenario, "--scenario-start",
                                   str(start), "--scenario-end", str(end), "--label-delay", "2"],
                             env=_env(s), stdout=subprocess.PIPE, stderr=open(outdir / "simulator.log", "wb"),
                             text=True)
        summary_line = (sim.stdout.strip().splitlines() or ["{}"])[-1]
        sim_summary = orjson.loads(summary_line) if summary_line.startswith("{") else {}
        if sim.returncode != 0:
            raise BreeBoostError(f"simulator failed: {summary_line} (see {outdir / 'simulator.log'})")
        _print(f"      simulator done: {sim_summary.get('acked', '?')} acknowledged, {sim_summary.get('failed', 0)} failed")
        _print(f"[5/5] waiting up to {args.settle:.0f}s for the last windows to close and incidents to resolve")
        deadline = time.time() + args.settle
        while time.time() < deadline:
            firing = {e.get("fingerprint") for e in incidents if e.get("status") == "firing"}
            resolved = {e.get("fingerprint") for e in incidents if e.get("status") == "resolved"}
            if firing and firing <= resolved and _windowed(s) >= args.count:
                break
            for c in children:
                if c.proc.poll() is not None:
                    raise BreeBoostError(f"{c.name} exited with {c.proc.returncode}; see {c.log_path}")
            time.sleep(0.5)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
        _print("interrupted: stopping every process")
    finally:
        stop_tail.set()
        for c in children:
            c.stop()
        if not completed:
            broker.stop()
    if interrupted:
        return 130
    try:
        from breeboost.kafka_io import read_topic
        from streams.audit import audit_topics

        audit = audit_topics(broker.settings, idle_timeout_s=2.0)
        windows = sum(1 for _ in read_topic(broker.settings, broker.settings.topic_drift_stats, idle_timeout_s=1.0))
        report = outdir / "report.html"
        r = subprocess.run(BB + ["report", "--bootstrap", broker.bootstrap, "--out", str(report),
                                 "--json", str(outdir / "drift-stats.json")],
                           env=_env(broker.settings, model_dir=str(model_dir)), stdout=subprocess.DEVNULL,
                           stderr=open(outdir / "report.log", "wb"))
        if r.returncode != 0:
            report = None
    finally:
        broker.stop()
    return _summary(outdir, audit, incidents, children, ports, windows, report)


def _windowed(settings: Settings) -> int:
    """Events covered by the drift windows published so far."""
    from breeboost.kafka_io import read_topic

    total = 0
    for r in read_topic(settings, settings.topic_drift_stats, idle_timeout_s=0.5, timeout_s=10):
        try:
            total += int(orjson.loads(r.value)["window"]["events"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return total


def _wait_ready(children: list[_Child], ports: dict[str, int], timeout_s: float = 90.0) -> None:
    import urllib.request

    deadline = time.time() + timeout_s
    pending = set(ports)
    while pending and time.time() < deadline:
        for c in children:
            if c.proc.poll() is not None:
                raise BreeBoostError(f"{c.name} exited at start-up with {c.proc.returncode}; see {c.log_path}")
        for name in list(pending):
            log_text = (next(c for c in children if c.name == name)).log_path.read_text(errors="replace")
            if "partitions assigned" in log_text:
                pending.discard(name)
        time.sleep(0.3)
    if pending:
        raise BreeBoostError(f"{sorted(pending)} not ready after {timeout_s:.0f}s")


def _summary(outdir: Path, audit: Any, incidents: list[dict], children: list[_Child], ports: dict, windows: int,
             report: Path | None) -> int:
    by_kind: dict[str, int] = {}
    for e in incidents:
        k = f"{e.get('status')} {e.get('severity')} {e.get('type')}"
        by_kind[k] = by_kind.get(k, 0) + 1
    a = audit.as_dict()
    summary = {"produced": a["produced"], "scored": a["scored"], "dead_lettered": a["dead_lettered"],
               "missing": a["missing"], "audit_ok": a["ok"], "windows": windows, "incident_events": by_kind,
               "dlq_by_reason": a["dlq_by_reason"], "report": str(report) if report else None,
               "logs": {c.name: str(c.log_path) for c in children}, "folder": str(outdir)}
    (outdir / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    _print("")
    _print("Summary")
    _print(f"  transactions produced {a['produced']}, scored {a['scored']}, dead-lettered {a['dead_lettered']}, "
           f"missing {a['missing']}  -> audit {'OK' if a['ok'] else 'FAILED'}")
    _print(f"  drift windows published: {windows}")
    for k, n in sorted(by_kind.items()):
        _print(f"  incidents: {n} x {k}")
    if not by_kind:
        _print("  incidents: none")
    _print(f"  metrics were served at " + ", ".join(f"{k} http://127.0.0.1:{v}/metrics" for k, v in ports.items()))
    _print(f"  logs: {outdir}/*.log (one JSON object per line); summary: {outdir / 'summary.json'}")
    if report:
        _print(f"  drift report (open offline in a browser): {report}")
    return 0 if a["ok"] else 1
