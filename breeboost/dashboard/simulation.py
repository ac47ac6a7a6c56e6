"""The simulator page's runs: ``breeboost simulate`` as a child process, one at a time.

>>> spec = SimulationSpec(scenario="amount_scale:factor=3", rate=500, count=1000)
>>> spec.command()[3:]
['simulate', '--count', '1000', '--rate', '500', '--seed', '0', '--scenario', 'amount_scale:factor=3', '--scenario-start', '0']
>>> SimulationSpec(rate=0, count=10).check()
Traceback (most recent call last):
...
ValueError: rate: expected events per second > 0, got 0
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from breeboost.commands.dashboard import TOKEN_ENV, settings_env
from breeboost.settings import Settings

__all__ = ["SimulationSpec", "SimulationRun", "SimulationRunner"]


@dataclass(frozen=True)
class SimulationSpec:
    """One ``breeboost simulate`` run: ``scenario`` (``NAME[:k=v,...]``, or empty for calm traffic) from
    event ``scenario_start`` to ``scenario_end``, ``count`` events at ``rate`` per second."""

    scenario: str = ""
    rate: float = 1000.0
    count: int = 30_000
    seed: int = 0
    scenario_start: int = 0
    scenario_end: int | None = None

    def check(self) -> None:
        """``ValueError`` naming the first bad field (the scenario is parsed by the simulator's parser)."""
        if not self.rate > 0:
            raise ValueError(f"rate: expected events per second > 0, got {self.rate!r}")
        if self.count < 1:
            raise ValueError(f"count: expected an integer >= 1, got {self.count!r}")
        if self.scenario_end is not None and self.scenario_end <= self.scenario_start:
            raise ValueError(f"scenario_end: expected > scenario_start ({self.scenario_start}), got {self.scenario_end}")
        if self.scenario:
            from simulator import parse_scenario

            try:
                parse_scenario(self.scenario, self.scenario_start, self.scenario_end)
            except Exception as e:  # the simulator's ScenarioError, with the valid choices
                raise ValueError(f"scenario: {e}") from None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "breeboost.cli", "simulate", "--count", str(self.count),
               "--rate", f"{self.rate:g}", "--seed", str(self.seed)]
        if self.scenario:
            cmd += ["--scenario", self.scenario, "--scenario-start", str(self.scenario_start)]
            if self.scenario_end is not None:
                cmd += ["--scenario-end", str(self.scenario_end)]
        return cmd


@dataclass
class SimulationRun:
    """A started run: its spec, process and output file; :meth:`status` reads how it is going."""

    spec: SimulationSpec
    proc: Any
    out_path: Path
    started_at: float = field(default_factory=time.time)

    def status(self) -> dict:
        code = self.proc.poll()
        summary: dict = {}
        if code is not None:
            lines = self.out_path.read_text(errors="replace").strip().splitlines() if self.out_path.exists() else []
            if lines and lines[-1].startswith("{"):
                try:
                    summary = orjson.loads(lines[-1])
                except orjson.JSONDecodeError:
                    summary = {}
        return {"scenario": self.spec.scenario or "(calm)", "rate": self.spec.rate, "count": self.spec.count,
                "pid": self.proc.pid, "running": code is None, "exit_code": code,
                "started_at": self.started_at, "acked": summary.get("acked"), "failed": summary.get("failed")}


class SimulationRunner:
    """Starts ``breeboost simulate`` with the dashboard's settings; at most one run at a time (a new one
    waits for the last to finish or be stopped). Runs die with the dashboard (``die_with_parent``)."""

    def __init__(self, settings: Settings, workdir: str | None = None, keep: int = 10) -> None:
        self.settings = settings
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="breeboost-dashboard-sim-"))
        self.keep = keep
        self._runs: list[SimulationRun] = []
        self._lock = threading.Lock()

    def start(self, spec: SimulationSpec) -> dict:
        """Start a run (``ValueError`` for a bad spec or while another run goes on); its status."""
        from breeboost.broker import die_with_parent

        spec.check()
        with self._lock:
            if self._runs and self._runs[-1].proc.poll() is None:
                raise ValueError("a simulation is already running: stop it first")
            self.workdir.mkdir(parents=True, exist_ok=True)
            out = self.workdir / f"simulate-{len(self._runs) + 1}.out"
            env = settings_env(self.settings)
            env.pop(TOKEN_ENV, None)   # the dashboard's own secret stays with the dashboard
            with open(out, "wb") as fh:
                proc = subprocess.Popen(spec.command(), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=die_with_parent)
            self._runs = (self._runs + [SimulationRun(spec, proc, out)])[-self.keep:]
            return self._runs[-1].status()

    def stop(self) -> bool:
        """Stop the running simulation (SIGTERM, then SIGKILL after 5 s); whether one was running."""
        with self._lock:
            run = self._runs[-1] if self._runs else None
        if run is None or run.proc.poll() is not None:
            return False
        run.proc.terminate()
        try:
            run.proc.wait(5)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
        return True

    def runs(self) -> list[dict]:
        """Status of the last runs, newest first."""
        with self._lock:
            return [r.status() for r in reversed(self._runs)]
