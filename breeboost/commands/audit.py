"""``breeboost audit``: prove from the topics that every transaction that entered was scored or
dead-lettered (:func:`streams.audit.audit_topics`); prints the report as one JSON line, exit status 1 if
anything is missing or both scored and dead-lettered."""
from __future__ import annotations

import argparse
import sys

import orjson

from breeboost.settings import Settings

__all__ = ["add_audit_arguments", "run_audit"]


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expect", type=int, default=None,
                   help="number of transactions messages to wait for before the idle timeout may end reading")
    p.add_argument("--idle-timeout", type=float, default=3.0, help="stop reading a topic after this many idle seconds")
    p.add_argument("--timeout", type=float, default=300.0, help="give up reading a topic after this many seconds")


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.audit import audit_topics

    rep = audit_topics(settings, expect=args.expect, idle_timeout_s=args.idle_timeout, timeout_s=args.timeout)
    sys.stdout.write(orjson.dumps(rep.as_dict()).decode() + "\n")
    return 0 if rep.ok else 1
