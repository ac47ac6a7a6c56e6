"""Worker throughput with the dashboard open vs closed: ``python -m bench.dashboard_bench [--events N]``.

Each run pre-fills fresh topics with ``--events`` transactions and times the real worker (``bench.runner
pipeline``: decode, validate, score, windows, publish) over them, as the other pipeline runs do. "Closed":
no dashboard at all. "Open": the dashboard's server (``python -m breeboost.dashboard.server``, what
``breeboost dashboard`` runs) serves the topics the worker writes, and a client keeps a page open for the
whole run: ``--client browser`` is Debian's headless chromium on the overview page (refreshing by itself
every ``--refresh`` s, as an operator's would); ``--client source`` calls the pages' data access
(``LiveSource.snapshot``, with the tails of scores and dead letters that the Transactions page reads) at
the same period in this process: the dashboard's polling alone, without rendering. Runs
alternate closed/open so both see the same machine load. Prints one JSON line: each run's events/s, the
medians, their ratio (open / closed), and the CPU seconds the dashboard and the browser used per run.

The bench worker serves no metrics endpoint, so the dashboard's scrape (one GET per 2 s) is not in it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.env import CACHE_DIR, BenchEnv, encode_payloads, prefill, ratio, run_child, train_or_load_model

__all__ = ["main"]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (and their children that were waited for), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15])   # utime, stime, cutime, cstime
    return total / tick


def _tree(pid: int) -> list[int]:
    out = [pid]
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for k in kids:
        out += _tree(int(k))
    return out


class Dashboard:
    """The dashboard server on a free port of 127.0.0.1, and one client keeping a page open."""

    def __init__(self, settings: Any, args: argparse.Namespace, workdir: Path) -> None:
        self.settings, self.workdir = settings, workdir
        self.client, self.refresh_s, self.nice, self.browser_nice = args.client, args.refresh, args.nice, args.browser_nice
        self.proc: Any = None
        self.browser: Any = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.polls = 0

    def __enter__(self) -> "Dashboard":
        from breeboost.broker import die_with_parent, free_port
        from breeboost.commands.dashboard import settings_env

        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        if self.client == "browser":
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "breeboost.dashboard.server", "--port", str(port), "--refresh",
                 str(self.refresh_s), "--nice", str(self.nice)], env=settings_env(self.settings), stdout=open(self.workdir / "dashboard.log", "ab"),
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            self._wait_health()
            self._open_browser()
        else:
            from breeboost.dashboard.data import LiveSource

            self.source = LiveSource(self.settings, [])
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._poller.start()
        return self

    def _wait_health(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"dashboard did not start; see {self.workdir / 'dashboard.log'}")

    def _open_browser(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_AVOID_STATS"] = "true"
        o = Options()
        o.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                  f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chromium-')}"):
            o.add_argument(a)
        nice = self.browser_nice
        service = Service(CHROMEDRIVER, popen_kw={"preexec_fn": (lambda: os.nice(nice)) if nice else None})
        self.browser = webdriver.Chrome(service=service, options=o)
        self.browser.get(self.url)
        deadline = time.monotonic() + 60
        while "Throughput" not in self.browser.find_element("tag name", "body").text and time.monotonic() < deadline:
            time.sleep(0.5)

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.source.snapshot(scores=True)   # the costliest page: Transactions also reads the tails
            self.polls += 1

    def cpu_seconds(self) -> dict[str, float]:
        """CPU used so far by the dashboard (its server process, or this process's polling) and the browser."""
        if self.client == "browser":
            service = self.browser.service.process.pid
            return {"dashboard": _cpu_seconds([self.proc.pid]), "browser": _cpu_seconds(_tree(service))}
        return {"dashboard": time.process_time(), "browser": 0.0}

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.browser is not None:
            self.browser.quit()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        if self._poller is not None:
            self._poller.join(5)
            self.source.close()


def _one(env: BenchEnv, model: str, payloads: tuple, args: argparse.Namespace, open_: bool, log: Path) -> dict:
    s = env.settings(partitions=args.partitions)
    prefill(s, *payloads)
    cmd = ["pipeline", "--events", str(args.events), "--model", model]
    if not open_:
        r = run_child(s, cmd, log_path=log)
        return {"rate": r.get("rate"), "cpu_rate": r.get("cpu_rate")}
    with Dashboard(s, args, log.parent) as d:
        before = d.cpu_seconds()
        r = run_child(s, cmd, log_path=log)
        after = d.cpu_seconds()
        seconds = r.get("seconds") or 0.0
    return {"rate": r.get("rate"), "cpu_rate": r.get("cpu_rate"), "seconds": seconds,
            "dashboard_cpu_s": round(after["dashboard"] - before["dashboard"], 2),
            "browser_cpu_s": round(after["browser"] - before["browser"], 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dashboard_bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000, help="transactions per run (default 300000)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, alternated (default 3)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the topics (default 4, as the demo)")
    p.add_argument("--refresh", type=float, default=3.0, help="page refresh period, seconds (default 3)")
    p.add_argument("--nice", type=int, default=10, help="the dashboard server's niceness (default 10, its default)")
    p.add_argument("--browser-nice", type=int, default=0,
                   help="the browser's niceness (default 0: as a person's; an operator's browser is usually on "
                        "another machine)")
    p.add_argument("--client", choices=("browser", "source"), default=None,
                   help="what keeps the dashboard open (default: browser when Debian's chromium is installed)")
    a = p.parse_args(argv)
    a.client = a.client or ("browser" if os.path.exists(CHROMIUM) and shutil.which("chromedriver") else "source")
    workdir = CACHE_DIR / "dashboard-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    model = train_or_load_model()
    payloads = encode_payloads(a.events, seed=11)
    runs: dict[str, list[dict]] = {"closed": [], "open": []}
    with BenchEnv(workdir) as env:
        for i in range(a.repeats):
            for mode in (("closed", "open") if i % 2 == 0 else ("open", "closed")):
                r = _one(env, model, payloads, a, mode == "open", workdir / "children.log")
                runs[mode].append(r)
                print(f"  {mode}: {r}", file=sys.stderr, flush=True)
    med = {m: statistics.median([r["rate"] for r in rs if r.get("rate")]) for m, rs in runs.items()}
    cpu_med = {m: statistics.median([r["cpu_rate"] for r in rs if r.get("cpu_rate")]) for m, rs in runs.items()}
    print(json.dumps({"events": a.events, "partitions": a.partitions, "client": a.client, "refresh_s": a.refresh,
                      "nice": a.nice, "browser_nice": a.browser_nice,
                      "closed_ev_s": med["closed"], "open_ev_s": med["open"], "ratio_open_closed": ratio(med["open"], med["closed"]),
                      "cpu_rate_ratio": ratio(cpu_med["open"], cpu_med["closed"]), "runs": runs,
                      "load_avg": os.getloadavg()}))


if __name__ == "__main__":
    main()
