"""A real Prometheus server on loopback for tests: scrape given targets, evaluate rules, query the HTTP API.

Uses the ``prometheus`` binary on ``PATH`` (Debian's ``prometheus`` package; CI installs it) or the one
named by ``BREEBOOST_PROMETHEUS_BIN``. Only the standard library talks to it (urllib), so no client
package is needed.

Typical use, from a test that has a metrics endpoint running on ``127.0.0.1:PORT``::

    results = scrape_and_query("127.0.0.1:PORT", ['breeboost_events_total{outcome="scored"}'], timeout=30)
    assert float(results['breeboost_events_total{outcome="scored"}'][0]["value"][1]) > 0

or, to keep one server for several checks::

    with PrometheusServer(["127.0.0.1:PORT"], rule_files=[ALERTS]) as prom:
        prom.wait_for('up{job="breeboost"}', timeout=20)
        prom.query("sum(rate(breeboost_events_total[10s]))")
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

__all__ = ["PrometheusError", "PrometheusServer", "prometheus_binary", "render_config", "scrape_and_query"]


class PrometheusError(RuntimeError):
    """Prometheus did not start, a query failed, or a query stayed empty until the timeout."""


def prometheus_binary() -> str | None:
    """Path of the Prometheus server binary, or ``None`` when it is not installed."""
    return os.environ.get("BREEBOOST_PROMETHEUS_BIN") or shutil.which("prometheus")


def render_config(targets: Sequence[str], job: str = "breeboost", scrape_interval: str = "1s",
                  rule_files: Iterable[str | os.PathLike] = ()) -> str:
    """The Prometheus configuration (JSON, a subset of YAML) scraping ``targets`` as one job.

    >>> cfg = json.loads(render_config(["127.0.0.1:9464"], rule_files=["/etc/alerts.yml"]))
    >>> cfg["scrape_configs"][0]["static_configs"][0]["targets"], cfg["global"]["scrape_timeout"]
    (['127.0.0.1:9464'], '1s')
    >>> cfg["rule_files"]
    ['/etc/alerts.yml']
    >>> render_config([])
    Traceback (most recent call last):
    ...
    ValueError: targets: expected at least one HOST:PORT
    """
    if not targets:
        raise ValueError("targets: expected at least one HOST:PORT")
    config = {
        # The timeout may not exceed the interval; both short so that tests see data within seconds.
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": scrape_interval},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    return json.dumps(config, indent=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """One Prometheus process on ``127.0.0.1:<free port>`` with its own TSDB in a temporary directory.

    ``start()`` returns once ``/-/ready`` answers; ``stop()`` kills the process and removes the
    directory (unless ``workdir`` was given). Also a context manager.
    """

    def __init__(self, targets: Sequence[str], job: str = "breeboost", scrape_interval: str = "1s",
                 rule_files: Iterable[str | os.PathLike] = (), workdir: str | os.PathLike | None = None,
                 binary: str | None = None) -> None:
        self.config_text = render_config(targets, job, scrape_interval, rule_files)
        self.binary = binary or prometheus_binary()
        if not self.binary:
            raise PrometheusError("prometheus binary not found: install Debian's `prometheus` package "
                                  "or set BREEBOOST_PROMETHEUS_BIN")
        self.targets = list(targets)
        self.job = job
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise PrometheusError("not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir() / "prometheus.log"

    def _dir(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="breeboost-prom-"))
        return self.workdir

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        d = self._dir()
        (d / "prometheus.yml").write_text(self.config_text)
        # A port picked free can be taken before Prometheus binds it: try a few.
        for _ in range(3):
            self.port = _free_port()
            self._log = open(self.log_path, "ab")
            self._proc = subprocess.Popen(
                [self.binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle", "--log.level=warn"],
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(timeout):
                return self
            self._kill()
            if "address already in use" not in self._log_tail():
                break
        tail = self._log_tail()
        self.stop()
        raise PrometheusError(f"prometheus did not become ready within {timeout:.0f} s:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # SIGKILL: nothing in a test TSDB needs a clean shutdown, and it never waits.
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        self._kill()
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------------------------
    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises :class:`PrometheusError` with the error."""
        qs = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}" + (f"?{qs}" if qs else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: bad query, with a JSON body saying why
            try:
                body = json.load(e)
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {e.code}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query: the result list (``[{"metric": {...}, "value": [ts, "1.5"]}, ...]`` for vectors)."""
        data = self.api("query", query=expr, time=at)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query that returns (at most) one series, as a float; ``None`` if empty."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, timeout: float = 30.0,
                 predicate: Callable[[list[dict]], bool] = bool, poll_s: float = 0.2) -> list[dict]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: non-empty); return the result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise PrometheusError(f"{expr!r} still {result!r} after {timeout:.0f} s; "
                                      f"targets: {self.target_health()}")
            time.sleep(poll_s)

    def target_health(self) -> list[dict]:
        """``[{"scrapeUrl", "health", "lastError"}]`` of every active target."""
        return [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")}
                for t in self.api("targets")["activeTargets"]]

    def rules(self) -> list[dict]:
        """Every loaded rule (from ``/api/v1/rules``), with its group name under ``group``."""
        return [{**r, "group": g["name"]} for g in self.api("rules")["groups"] for r in g["rules"]]


def scrape_and_query(target: str, queries: Sequence[str], timeout: float = 30.0,
                     rule_files: Iterable[str | os.PathLike] = ()) -> dict[str, list[dict]]:
    """Start Prometheus scraping ``target`` (``HOST:PORT`` serving ``/metrics``) every second, wait until
    every query in ``queries`` returns a non-empty result, stop Prometheus and return ``{query: result}``.

    Raises :class:`PrometheusError` naming the queries that stayed empty and the target's last scrape
    error when ``timeout`` (seconds, for the whole call) runs out.
    """
    deadline = time.monotonic() + timeout
    with PrometheusServer([target], rule_files=rule_files) as prom:
        results: dict[str, list[dict]] = {}
        pending = list(queries)
        while pending:
            for q in list(pending):
                r = prom.query(q)
                if r:
                    results[q] = r
                    pending.remove(q)
            if pending:
                if time.monotonic() >= deadline:
                    raise PrometheusError(f"queries still empty after {timeout:.0f} s: {pending}; "
                                          f"targets: {prom.target_health()}")
                time.sleep(0.2)
        return results
