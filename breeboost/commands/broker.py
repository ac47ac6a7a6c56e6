"""``breeboost broker``: run the embedded broker in the foreground until Ctrl-C or SIGTERM."""
from __future__ import annotations

import argparse
import signal
import threading

from breeboost.broker import EmbeddedBroker
from breeboost.settings import Settings

__all__ = ["add_broker_arguments", "run_broker"]


def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on and advertise (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092; 0 picks a free one)")
    p.add_argument("--storage", default="memory://tansu/",
                   help="Tansu storage engine: memory://tansu/ (default, lost on exit) or s3://BUCKET/ "
                        "(persistent; needs AWS_ENDPOINT etc., see docs/broker.md)")
    p.add_argument("--no-topics", action="store_true", help="do not create the project's topics")


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(args.host, args.port, args.storage, settings=settings,
                        create_topics=not args.no_topics) as broker:
        print(f"BREEBOOST_BOOTSTRAP={broker.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                print("broker exited unexpectedly", flush=True)
                return 1
    return 0
