"""``breeboost dashboard``: the operator dashboard (Streamlit), live from the topics and the workers' metrics.

    breeboost dashboard [--host 127.0.0.1] [--port 8501] [--metrics-url URL ...] [--incident-state DIR]

It binds 127.0.0.1 by default. Bound to any other address it asks every browser for a token, the secret
``BREEBOOST_DASHBOARD_TOKEN`` (read from the environment only: never a flag, never logged), and it will not
start without one. This process checks the options, then becomes the dashboard's server (``exec`` of
:mod:`breeboost.dashboard.server`, which serves :mod:`breeboost.dashboard.app`), so a signal to it stops
the dashboard.

>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, True, False)
>>> a = parse_app_arguments(["--host", "0.0.0.0", "--metrics-url", "http://w1/metrics", "--refresh", "5"])
>>> a.host, a.metrics_url, a.refresh, a.incident_state
('0.0.0.0', ['http://w1/metrics'], 5.0, None)
"""
from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import sys
from typing import Mapping

from breeboost.errors import BreeBoostError
from breeboost.settings import Secret, Settings, env_var

__all__ = ["add_dashboard_arguments", "run_dashboard", "parse_app_arguments", "app_argv", "is_loopback",
           "dashboard_token", "settings_env", "TOKEN_ENV", "DEFAULT_PORT", "DEFAULT_NICE"]

#: The dashboard's secret: every browser must give it when the dashboard binds beyond loopback.
TOKEN_ENV = "BREEBOOST_DASHBOARD_TOKEN"
DEFAULT_PORT = 8501
#: The dashboard observes; on a host it shares with workers it must not take their CPU (docs/dashboard.md).
DEFAULT_NICE = 10


def _app_options(p: argparse.ArgumentParser) -> None:
    """The options the app itself reads (passed on to it after ``--``)."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs BREEBOOST_DASHBOARD_TOKEN)")
    p.add_argument("--metrics-url", action="append", default=[], metavar="URL",
                   help="a worker's Prometheus endpoint, e.g. http://127.0.0.1:9464/metrics (repeatable; "
                        "throughput, latency and dead-letter rates come from these)")
    p.add_argument("--incident-state", metavar="DIR",
                   help="the incident agent's --state-dir, to show breaches still pending (optional)")
    p.add_argument("--refresh", type=float, default=3.0, metavar="S",
                   help="seconds between two refreshes of a page (default 3)")


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    _app_options(p)
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to serve on (default {DEFAULT_PORT}; 0: a free one)")
    p.add_argument("--nice", type=int, default=DEFAULT_NICE, metavar="N",
                   help=f"run at this CPU niceness (default {DEFAULT_NICE}: on a machine shared with workers the "
                        "dashboard gets the CPU they leave; 0: as any process)")


def parse_app_arguments(argv: list[str]) -> argparse.Namespace:
    """The app's options from its command line (what :func:`app_argv` wrote)."""
    p = argparse.ArgumentParser(prog="breeboost.dashboard.app")
    _app_options(p)
    return p.parse_args(argv)


def app_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--host", args.host, "--refresh", str(args.refresh)]
    for url in args.metrics_url:
        argv += ["--metrics-url", url]
    if args.incident_state:
        argv += ["--incident-state", os.path.abspath(args.incident_state)]
    return argv


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dashboard_token(environ: Mapping[str, str] | None = None) -> Secret:
    """The token from ``BREEBOOST_DASHBOARD_TOKEN`` (empty: none), wrapped so it never prints."""
    return Secret((os.environ if environ is None else environ).get(TOKEN_ENV, "").strip())


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes a child ``breeboost`` process (or the app) use ``settings``; secrets go
    to the environment, never to a command line."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.as_safe_dict().items():
        env[env_var(name)] = str(value)
    env[env_var("sasl_password")] = settings.sasl_password.reveal()
    return env


def _check(args: argparse.Namespace) -> None:
    from breeboost.broker import port_is_free

    if not 0 <= args.port < 65536:
        raise BreeBoostError(f"--port: expected 0..65535, got {args.port}")
    if not 0 <= args.nice <= 19:
        raise BreeBoostError(f"--nice: expected 0..19, got {args.nice}")
    if args.refresh < 0.5:
        raise BreeBoostError(f"--refresh: expected seconds >= 0.5, got {args.refresh}")
    if not is_loopback(args.host) and not dashboard_token():
        raise BreeBoostError(f"--host {args.host} serves beyond this machine: set {TOKEN_ENV} to a secret that "
                             "every browser must give (or bind 127.0.0.1)")
    if args.port and not port_is_free(args.host, args.port):
        raise BreeBoostError(f"port {args.port} on {args.host} is already in use: pass --port with another one "
                             "(0: a free one)")
    if importlib.util.find_spec("streamlit") is None:
        raise BreeBoostError("the dashboard needs Streamlit: pip install 'breeboost[dashboard]'")


def run_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from breeboost.broker import free_port

    _check(args)
    port = args.port or free_port(args.host)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"dashboard: http://{shown}:{port}/ (reading {settings.bootstrap}; Ctrl-C stops it)", flush=True)
    # the server module is named, not imported: the dashboard is a front end above the commands
    cmd = [sys.executable, "-m", "breeboost.dashboard.server", "--port", str(port), "--nice", str(args.nice),
           *app_argv(args)]
    os.execve(sys.executable, cmd, settings_env(settings))
    return 0   # pragma: no cover - execve does not return
