"""The dashboard's server process: ``python -m breeboost.dashboard.server`` (what ``breeboost dashboard``
becomes once its options are checked).

It lowers its CPU priority (``--nice``, default 10), builds the one
:class:`~breeboost.dashboard.data.LiveSource` first (topic followers and the metrics
scraper start now, so the overview's history covers the time before anyone opened a page), then hands
over to Streamlit's own command line to serve :mod:`breeboost.dashboard.app`, whose sessions all use it.

>>> streamlit_flags("127.0.0.1", 8501)[:4]
['--server.address', '127.0.0.1', '--server.port', '8501']
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from breeboost.commands.dashboard import add_dashboard_arguments, app_argv, dashboard_token
from breeboost.dashboard.data import LiveSource, share
from breeboost.logs import configure_logging
from breeboost.settings import Settings

__all__ = ["main", "streamlit_flags"]


def streamlit_flags(host: str, port: int) -> list[str]:
    """Streamlit's settings for serving, not developing: no browser, no file watcher, no usage statistics
    (this machine reaches no outside address anyway), the viewer's toolbar only."""
    return ["--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m breeboost.dashboard.server")
    add_dashboard_arguments(p)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.nice:
        os.nice(args.nice)   # before any thread starts: every thread of the server runs at it
    settings = Settings.from_env()
    token = dashboard_token()
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr,
                      secrets=settings.secrets() + ([token.reveal()] if token else []))
    share(LiveSource(settings, args.metrics_url, args.incident_state))
    app = importlib.util.find_spec("breeboost.dashboard.app").origin
    sys.argv = ["streamlit", "run", app, *streamlit_flags(args.host, args.port), "--", *app_argv(args)]
    from streamlit.web.cli import main as streamlit_main

    streamlit_main()


if __name__ == "__main__":
    main()
