"""``breeboost demo``: the whole system on one machine, on the embedded broker, with a scripted scenario.

broker -> (train a model if none) -> scoring worker + incident agent (separate processes) + the dashboard
-> simulator (calm, then a drift scenario, then calm) -> incidents printed live as they fire and resolve ->
summary. With ``--keep`` the whole system then keeps running (the dashboard stays live) until Ctrl-C.
Every child process is tied to this one: Ctrl-C (or its death) stops them all.

``--scenario concept_shift`` is the closed loop (#18): a fraud pattern the model was never trained on, from
a third of the stream to its end (a real change of behaviour does not revert). The incident agent runs with
an actions policy that promotes automatically (``OUT/policy.toml``), so the terminal shows the
concept_drift incident, the retrain it waits for and starts, the guard's comparison, the promotion, the
new champion served and the incident resolving; the summary lists every action and both champions.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from breeboost.broker import EmbeddedBroker, die_with_parent, free_port, port_is_free
from breeboost.errors import BreeBoostError
from breeboost.logs import configure_logging, log
from breeboost.settings import Settings, env_var

__all__ = ["add_demo_arguments", "run_demo"]

BB = [sys.executable, "-m", "breeboost.cli"]
_log = logging.getLogger("breeboost.demo")
DASHBOARD_PORT = 8501
#: Seconds the children get to stop on SIGTERM (all at once) before they are killed.
STOP_GRACE_S = 4.0
#: The closed loop's stream (``--scenario concept_shift``): time after the shift for the incident, the labels
#: the retrain waits for, the retrain and the promotion, and windows of the new champion after that.
LOOP_COUNT = 400_000
LOOP_POLICY = """# breeboost demo --scenario concept_shift: the closed loop, promotion without a person, judged on the
# challenger's shadow scores (after the retrain's offline comparison)
[actions.promote]
auto = true
evidence = "shadow"
"""


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=None,
                   help=f"transactions to simulate (default 150000; {LOOP_COUNT} with --scenario concept_shift)")
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
    p.add_argument("--settle", type=float, default=180.0,
                   help="seconds to wait after the simulator for windows to close and incidents to resolve")
    p.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT,
                   help=f"serve the dashboard on this port of 127.0.0.1 (default {DASHBOARD_PORT}, or a free one if "
                        "that is taken; 0: no dashboard)")
    p.add_argument("--keep", action="store_true",
                   help="keep the whole system running after the scenario (broker, workers, dashboard) until Ctrl-C")


class _Child:
    """A child process logging to ``LOGDIR/NAME.log``; the demo fails when an ``essential`` one exits."""

    def __init__(self, name: str, cmd: list[str], logdir: Path, env: dict[str, str], essential: bool = True) -> None:
        self.name = name
        self.essential = essential
        self.log_path = logdir / f"{name}.log"
        self._fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=die_with_parent)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, deadline: float) -> None:
        """Wait for the child until ``deadline`` (``time.monotonic()``), then kill it."""
        if self.proc.poll() is None:
            killed = False
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
            log(_log, "child stopped", child=self.name, pid=self.proc.pid, killed=killed,
                code=self.proc.returncode)
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
    """Print every incident event as it arrives (until ``stop``) and keep it in ``seen``."""
    from breeboost.kafka_io import read_topic_json

    for ev in read_topic_json(settings, settings.topic_incidents, idle_timeout_s=None, timeout_s=None, stop=stop,
                              poll_ms=300):
        seen.append(ev)
        note = _action_note(ev)
        if note is not None:
            _print(f"  action   {ev.get('severity', '?')} {ev.get('type', '?')}: {note}")
            continue
        if ev.get("event") == "updated":
            continue      # a person's or a rule's update of an incident already printed
        feats = ",".join((ev.get("details") or {}).get("affected_features") or [])
        _print(f"  incident {str(ev.get('status', '?')).upper():9s} {ev.get('severity', '?')} "
               f"{ev.get('type', '?')}{'(' + feats + ')' if feats else ''}: {ev.get('summary', '')}")


def _action_note(ev: dict) -> str | None:
    """The text of the note an automatic action added to an incident (an ``updated`` event by the agent)."""
    notes = ev.get("notes") or []
    if ev.get("event") != "updated" or not notes or notes[-1].get("author") != "auto":
        return None
    return str(notes[-1].get("text"))


@dataclass
class _DemoRun:
    """What one demo run holds while it goes: its folder, the model, the scenario's range, the child
    processes with their metrics ports and the incident events seen so far."""
    outdir: Path
    model_dir: Path
    start: int
    end: int
    children: list[_Child] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    incidents: list[dict] = field(default_factory=list)
    stop_tail: threading.Event = field(default_factory=threading.Event)
    dashboard_url: str | None = None
    loop: bool = False                 # the closed loop: concept_shift, actions on, automatic promotion
    champions: list[str | None] = field(default_factory=list)   # before and after

    @classmethod
    def plan(cls, args: argparse.Namespace, settings: Settings) -> "_DemoRun":
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        outdir = Path(args.out or f"demo-run-{stamp}").resolve()
        outdir.mkdir(parents=True, exist_ok=True)
        loop = args.scenario.split(":", 1)[0] == "concept_shift"
        if args.count is None:
            args.count = LOOP_COUNT if loop else 150_000
        start = args.scenario_start if args.scenario_start is not None else args.count // 3
        end = args.scenario_end if args.scenario_end is not None else args.count if loop else (2 * args.count) // 3
        return cls(outdir, Path(settings.model_dir).resolve(), start, end, loop=loop)

    def stop_children(self) -> None:
        """SIGTERM to every child at once, then up to :data:`STOP_GRACE_S` in all before the rest are killed
        (Ctrl-C must leave nothing running within seconds; outputs are idempotent, so a kill loses nothing)."""
        self.stop_tail.set()
        for c in self.children:
            c.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for c in self.children:
            c.stop(deadline)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    run = _DemoRun.plan(args, settings)

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell script's background job starts with SIGINT ignored, and Ctrl-C must still stop it
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # the demo talks to people on stdout; its own JSON log lines go to a file like every other process's
    configure_logging(settings.log_level, "json", stream=open(run.outdir / "demo.log", "a"),
                      secrets=settings.secrets())
    _print(f"BreeBoost demo: logs and results in {run.outdir}")
    broker = EmbeddedBroker(port=args.port, settings=settings, log_file=str(run.outdir / "broker.log"))
    code = None
    try:
        broker.start()
        _print(f"[1/5] embedded broker on {broker.bootstrap}, topics created ({broker.settings.partitions} partitions)")
        _ensure_model(args, run)
        _start_agents(broker.settings, run)
        _start_dashboard(args, broker.settings, run)
        _simulate(args, broker.settings, run)
        _settle(args, broker.settings, run)
        if not args.keep:
            run.stop_children()
        audit, windows, report = _results(broker, run)
        if run.loop:
            run.champions.append(_champion(run.model_dir))
        code = _summary(run, audit, windows, report, run.dashboard_url if args.keep else None)
        if args.keep:
            _keep_running(run)
    except KeyboardInterrupt:
        _print("interrupted: stopping every process")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):   # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        run.stop_children()
        broker.stop()
    return 130 if code is None else code


def _keep_running(run: _DemoRun) -> None:
    """``--keep``: everything stays up until Ctrl-C (SIGINT) or SIGTERM; a child that exits is reported once."""
    _print("")
    _print("--keep: broker, workers" + (f" and the dashboard ({run.dashboard_url})" if run.dashboard_url else "")
           + " keep running; Ctrl-C stops every process")
    reported: set[str] = set()
    while True:
        for c in run.children:
            if c.proc.poll() is not None and c.name not in reported:
                reported.add(c.name)
                _print(f"  {c.name} exited with {c.proc.returncode}; see {c.log_path}")
        time.sleep(0.5)


def _start_dashboard(args: argparse.Namespace, s: Settings, run: _DemoRun) -> None:
    """The dashboard on 127.0.0.1 (``--dashboard-port``; a free port when that one is taken), live from the
    worker's metrics and the incident agent's state; a dashboard that fails to start does not stop the demo."""
    if not args.dashboard_port:
        return
    if importlib.util.find_spec("streamlit") is None:
        _print("      dashboard: not started (pip install 'breeboost[dashboard]' to get it)")
        return
    port = args.dashboard_port
    if not port_is_free("127.0.0.1", port):
        port = free_port()
        _print(f"      port {args.dashboard_port} is taken: the dashboard uses {port}")
    child = _Child("dashboard", BB + ["dashboard", "--port", str(port), "--metrics-url",
                                      f"http://127.0.0.1:{run.ports['worker']}/metrics",
                                      "--incident-state", str(run.outdir / "state")], run.outdir, _env(s),
                   essential=False)
    run.children.append(child)
    url = f"http://127.0.0.1:{port}/"
    if _wait_http(url + "_stcore/health", child):
        run.dashboard_url = url
        _print(f"      dashboard: {url} (live; open it in a browser)")
    else:
        _print(f"      dashboard did not come up; see {child.log_path}")


def _wait_http(url: str, child: _Child, timeout_s: float = 60.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _ensure_model(args: argparse.Namespace, run: _DemoRun) -> None:
    """Step 2: train a model on simulated transactions unless the model directory has one."""
    from models.registry import champion_dir

    if (champion_dir(run.model_dir) / "metadata.json").exists():   # a plain artifact or a registry's champion
        _print(f"[2/5] using the model in {run.model_dir}")
    else:
        _train(args, run)
    if run.loop:
        # the retrain and the promotion change the registry they work on: a copy in the run's folder, so the
        # user's model directory (the next plain demo's model) stays as it was
        import shutil

        copy = run.outdir / "models"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run.model_dir, copy)     # a registry whole (its references too), or a plain artifact
        run.model_dir = copy
        _print(f"      closed loop: the retrain and the promotion work on a copy of the model, {copy}")


def _train(args: argparse.Namespace, run: _DemoRun) -> None:
    _print(f"[2/5] no model in {run.model_dir}: training one on {args.train_count} simulated transactions ...")
    t0 = time.time()
    train = subprocess.Popen(BB + ["train", "--sim-count", str(args.train_count), "--out", str(run.model_dir),
                                   "--log-format", "text"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent)
    with open(run.outdir / "train.log", "w") as tl:
        for line in train.stdout:   # progress, live
            tl.write(line)
            if line.startswith("train:"):
                _print("      " + line.rstrip())
    if train.wait() != 0:
        raise BreeBoostError(f"training failed (see {run.outdir / 'train.log'})")
    _print(f"      trained in {time.time() - t0:.0f}s")


def _start_agents(s: Settings, run: _DemoRun) -> None:
    """Step 3: the scoring worker and the incident agent, as two ``breeboost worker`` processes; then the
    thread that prints incidents as they come."""
    run.ports = {"worker": free_port(), "incident": free_port()}
    env = _env(s, model_dir=str(run.model_dir))
    run.children.append(_Child("worker", BB + ["worker", "--role", "scoring", "--metrics-port",
                                               str(run.ports["worker"])], run.outdir, env))
    policy: list[str] = []
    if run.loop:
        (run.outdir / "policy.toml").write_text(LOOP_POLICY)
        policy = ["--policy", str(run.outdir / "policy.toml")]
        run.champions.append(_champion(run.model_dir))
        _print(f"      closed loop: concept_drift -> retrain -> guarded promotion, automatic "
               f"({run.outdir / 'policy.toml'}); champion {run.champions[0]}")
    run.children.append(_Child("incident", BB + ["worker", "--role", "incident", "--metrics-port",
                                                 str(run.ports["incident"]), "--state-dir", str(run.outdir / "state"),
                                                 "--incident-log", str(run.outdir / "incident_log.jsonl"), *policy],
                               run.outdir, env))
    _print(f"[3/5] scoring worker (metrics http://127.0.0.1:{run.ports['worker']}/metrics) and incident agent "
           f"(metrics http://127.0.0.1:{run.ports['incident']}/metrics) starting")
    _wait_ready(run.children, run.ports)
    threading.Thread(target=_tail_incidents, args=(s, run.incidents, run.stop_tail), daemon=True).start()


def _champion(model_dir: Path) -> str | None:
    from models.registry import Registry

    try:
        return Registry(model_dir).state().champion
    except Exception:   # noqa: BLE001 - no registry readable: the summary says so
        return None


def _simulate(args: argparse.Namespace, s: Settings, run: _DemoRun) -> None:
    """Step 4: ``breeboost simulate``, calm, then the scenario on events [start, end), then calm."""
    _print(f"[4/5] simulating {args.count} transactions at {args.rate:.0f}/s; scenario {args.scenario} "
           f"on events [{run.start}, {run.end})")
    sim = subprocess.run(BB + ["simulate", "--count", str(args.count), "--rate", str(args.rate),
                               "--seed", str(args.seed), "--scenario", args.scenario, "--scenario-start",
                               str(run.start), "--scenario-end", str(run.end), "--label-delay", "2"],
                         env=_env(s), stdout=subprocess.PIPE, stderr=open(run.outdir / "simulator.log", "wb"),
                         text=True)
    summary_line = (sim.stdout.strip().splitlines() or ["{}"])[-1]
    sim_summary = orjson.loads(summary_line) if summary_line.startswith("{") else {}
    if sim.returncode != 0:
        raise BreeBoostError(f"simulator failed: {summary_line} (see {run.outdir / 'simulator.log'})")
    _print(f"      simulator done: {sim_summary.get('acked', '?')} acknowledged, {sim_summary.get('failed', 0)} failed")


def _settle(args: argparse.Namespace, s: Settings, run: _DemoRun) -> None:
    """Step 5: wait (at most ``--settle`` seconds) until every event is in a window and every incident that
    fired has resolved; a child that exits meanwhile fails the demo."""
    _print(f"[5/5] waiting up to {args.settle:.0f}s for the last windows to close and incidents to resolve")
    deadline = time.time() + args.settle
    while time.time() < deadline:
        firing = {e.get("fingerprint") for e in run.incidents if e.get("status") == "firing"}
        resolved = {e.get("fingerprint") for e in run.incidents if e.get("status") == "resolved"}
        if firing and firing <= resolved and _windowed(s) >= args.count:
            break
        for c in run.children:
            if c.essential and c.proc.poll() is not None:
                raise BreeBoostError(f"{c.name} exited with {c.proc.returncode}; see {c.log_path}")
        time.sleep(0.5)


def _results(broker: EmbeddedBroker, run: _DemoRun) -> tuple[Any, int, Path | None]:
    """The audit, the number of drift windows published (each once, however often it was delivered) and the
    HTML report (``None`` if it failed)."""
    from breeboost.kafka_io import read_topic_json
    from breeboost.windows_order import order_windows
    from streams.audit import audit_topics

    s = broker.settings
    audit = audit_topics(s, idle_timeout_s=2.0)
    windows = len(order_windows(read_topic_json(s, s.topic_drift_stats, idle_timeout_s=1.0)))
    report = run.outdir / "report.html"
    r = subprocess.run(BB + ["report", "--bootstrap", broker.bootstrap, "--out", str(report),
                             "--json", str(run.outdir / "drift-stats.json")],
                       env=_env(s, model_dir=str(run.model_dir)), stdout=subprocess.DEVNULL,
                       stderr=open(run.outdir / "report.log", "wb"))
    return audit, windows, report if r.returncode == 0 else None


def _windowed(settings: Settings) -> int:
    """Events covered by the drift windows published so far (a window delivered twice counts once)."""
    from breeboost.kafka_io import read_topic_json
    from breeboost.windows_order import order_windows

    total = 0
    for doc in order_windows(read_topic_json(settings, settings.topic_drift_stats, idle_timeout_s=0.5, timeout_s=10)):
        try:
            total += int(doc["window"]["events"])
        except (KeyError, TypeError, ValueError):
            continue
    return total


def _wait_ready(children: list[_Child], ports: dict[str, int], timeout_s: float = 90.0) -> None:
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


def _summary(run: _DemoRun, audit: Any, windows: int, report: Path | None, dashboard_url: str | None = None) -> int:
    outdir, incidents = run.outdir, run.incidents
    by_kind: dict[str, int] = {}
    for e in incidents:
        if e.get("event") == "updated":
            continue
        k = f"{e.get('status')} {e.get('severity')} {e.get('type')}"
        by_kind[k] = by_kind.get(k, 0) + 1
    actions = [f"{e.get('type')} {e.get('incident_id')}: {note}" for e in incidents
               if (note := _action_note(e)) is not None]
    a = audit.as_dict()
    summary = {"produced": a["produced"], "scored": a["scored"], "dead_lettered": a["dead_lettered"],
               "missing": a["missing"], "audit_ok": a["ok"], "windows": windows, "incident_events": by_kind,
               "actions": actions, "dlq_by_reason": a["dlq_by_reason"], "report": str(report) if report else None,
               "logs": {c.name: str(c.log_path) for c in run.children}, "folder": str(outdir)}
    if run.loop:
        summary["champion"] = {"before": run.champions[0], "after": run.champions[-1]}
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
    for line in actions:
        _print(f"  action: {line}")
    if run.loop:
        before, after = run.champions[0], run.champions[-1]
        _print(f"  champion: {before} -> {after}" + ("" if before != after else " (unchanged)"))
    served = "are served" if dashboard_url else "were served"
    _print(f"  metrics {served} at " + ", ".join(f"{k} http://127.0.0.1:{v}/metrics" for k, v in run.ports.items()))
    if dashboard_url:
        _print(f"  dashboard: {dashboard_url}")
    _print(f"  logs: {outdir}/*.log (one JSON object per line); summary: {outdir / 'summary.json'}")
    if report:
        _print(f"  drift report (open offline in a browser): {report}")
    return 0 if a["ok"] else 1
