"""``breeboost worker``: run the Faust worker (scoring + drift agents, and/or the incident agent)."""
from __future__ import annotations

import argparse
import logging
import os

from breeboost.logs import log
from breeboost.settings import Settings

_log = logging.getLogger("breeboost.worker")


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=("scoring", "incident", "all"), default="all",
                   help="scoring: score transactions and keep drift windows; incident: turn drift.stats into "
                        "incidents; all: both in one process (default)")
    p.add_argument("--model", dest="model", default=None,
                   help="model directory (alias of --model-dir; env BREEBOOST_MODEL_DIR)")
    p.add_argument("--policy", default=None, help="incident policy TOML (default: the shipped policy)")
    p.add_argument("--state-dir", default=None,
                   help="directory for the incident agent's state file (default: ./state)")
    p.add_argument("--webhook", action="append", default=[], metavar="URL[#alertmanager|#slack]",
                   help="post incident events to this URL (repeatable; format after '#', default alertmanager)")
    p.add_argument("--incident-log", default=None, help="also append incident events to this JSONL file")


def start_metrics_server(settings: Settings, registry) -> int:
    """Serve ``registry`` on metrics_host:metrics_port; returns the bound port (useful with port 0)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    port = server.server_address[1]
    log(_log, "metrics server started", host=settings.metrics_host, port=port)
    return port


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry

    from breeboost.worker import build_worker

    if args.model:
        settings = settings.replace(model_dir=args.model)
    registry = CollectorRegistry()
    stages = incident_service = watcher = None
    if args.role in ("scoring", "all"):
        from models.scorer import Scorer
        from streams.metrics import WorkerMetrics
        from streams.reload import ModelWatcher
        from streams.stages import WorkerStages

        scorer = Scorer.load(settings.model_dir, nthread=settings.nthread)
        stages = WorkerStages.build(scorer, settings, WorkerMetrics(registry))
        watcher = ModelWatcher(settings.model_dir, scorer.version, nthread=settings.nthread)
        log(_log, "model loaded", model_dir=settings.model_dir, version=scorer.version, threshold=scorer.threshold)
    if args.role in ("incident", "all"):
        from incident.service import IncidentService

        incident_service = IncidentService.create(settings, registry=registry, policy_path=args.policy,
                                                  state_dir=args.state_dir or "state", webhooks=args.webhook,
                                                  incident_log=args.incident_log)
    worker = build_worker(settings, args.role, stages=stages, incident_service=incident_service,
                          model_watcher=watcher)
    start_metrics_server(settings, registry)
    return _run(worker.app, settings, args.role)


def _run(app, settings: Settings, role: str) -> int:
    import faust

    log(_log, "worker starting", role=role, bootstrap=settings.bootstrap, pid=os.getpid(), app_id=app.conf.id)
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False,
                          quiet=True)
    worker.spinner = None   # Faust's terminal spinner writes control bytes into the JSON log stream
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
        log(_log, "worker stopped", code=code)
        return code
    return 0
