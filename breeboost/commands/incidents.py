"""``breeboost incidents``: tail the incidents topic; ``ack`` or ``close`` an incident with a note.

    breeboost incidents [--from-beginning] [--json] [--log FILE] [--max N] [--timeout S]
    breeboost incidents ack INCIDENT_ID [--note TEXT] [--author NAME]
    breeboost incidents close INCIDENT_ID --note TEXT [--author NAME]
"""
from __future__ import annotations

import argparse
import sys
import time

from breeboost.errors import BreeBoostError
from breeboost.settings import Settings

__all__ = ["add_incidents_arguments", "run_incidents", "annotate_incident", "format_row", "TABLE_HEADER"]

TABLE_HEADER = f"{'UPDATED (UTC)':<24} {'EVENT':<12} {'STATUS':<8} {'SEV':<3} {'TYPE':<18} {'INCIDENT':<16} {'FEATURES':<24} SUMMARY"


def format_row(e: dict) -> str:
    """One readable table line for an event.

    >>> format_row({"updated_at": "2025-01-01T00:00:00.000Z", "event": "fired", "status": "firing",
    ...             "severity": "P1", "type": "missing_data", "incident_id": "inc-0123456789ab",
    ...             "details": {"affected_features": []}, "summary": "P1 missing data"}).split()[:6]
    ['2025-01-01T00:00:00.000Z', 'fired', 'firing', 'P1', 'missing_data', 'inc-0123456789ab']
    """
    feats = ",".join((e.get("details") or {}).get("affected_features", [])) or "-"
    if len(feats) > 24:
        feats = feats[:21] + "..."
    return (f"{e.get('updated_at', ''):<24} {e.get('event', ''):<12} {e.get('status', ''):<8} "
            f"{e.get('severity', ''):<3} {e.get('type', ''):<18} {e.get('incident_id', ''):<16} {feats:<24} "
            f"{e.get('summary', '')}")


def add_incidents_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("tail", "ack", "close"), default="tail",
                   help="tail (default): print events as they arrive; ack/close: publish a note on an incident")
    p.add_argument("incident_id", nargs="?", metavar="INCIDENT_ID", help="the incident to ack or close (inc-...)")
    tail = p.add_argument_group("tail")
    tail.add_argument("--from-beginning", action="store_true",
                      help="print every event on the topic, not only those published after start-up")
    tail.add_argument("--json", action="store_true", help="one JSON object per line on stdout instead of a table")
    tail.add_argument("--log", metavar="FILE",
                      help="also append events to this JSON-lines incident log (idempotent: a replay adds nothing)")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N events")
    tail.add_argument("--timeout", type=float, metavar="S",
                      help="stop after S seconds in total (default: run until Ctrl-C or --max)")
    note = p.add_argument_group("ack / close")
    note.add_argument("--note", metavar="TEXT", help="the note to attach (required by close)")
    note.add_argument("--author", metavar="NAME", help="who writes the note (default: the login name)")


def run_incidents(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "tail":
        if args.incident_id:
            raise BreeBoostError(f"tail takes no INCIDENT_ID (got {args.incident_id!r}); did you mean ack or close?")
        if args.max is not None and args.max < 1:
            raise BreeBoostError(f"--max: expected an integer >= 1, got {args.max}")
        if args.timeout is not None and args.timeout <= 0:
            raise BreeBoostError(f"--timeout: expected seconds > 0, got {args.timeout}")
        return _tail(args, settings)
    return _note(args, settings)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from breeboost.kafka_io import read_topic
    from incident.events import decode_event
    from incident.log import IncidentLog
    from incident.topic import TOPIC_WAIT_S

    log = IncidentLog(args.log) if args.log else None
    since_ms = None if args.from_beginning else int(time.time() * 1000)
    if not args.json:
        print(TABLE_HEADER, flush=True)
    n = 0
    for r in read_topic(settings, settings.topic_incidents, idle_timeout_s=None, timeout_s=args.timeout,
                        max_records=args.max, since_ms=since_ms, topic_wait_s=TOPIC_WAIT_S):
        e = decode_event(r.value)
        if e is None:
            continue
        n += 1
        if log is not None:
            log.append([e])
        print(orjson.dumps(e).decode() if args.json else format_row(e), flush=True)
    print(f"{n} incident events", file=sys.stderr)
    return 0


def _note(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    import orjson

    try:
        author = args.author or getpass.getuser()
    except (KeyError, OSError):
        author = None
    ev = annotate_incident(settings, args.incident_id, args.action, args.note or "", author)
    print(orjson.dumps(ev).decode() if args.json else format_row(ev), flush=True)
    return 0


def annotate_incident(settings: Settings, incident_id: str | None, action: str, note: str,
                      author: str | None, now: float | None = None) -> dict:
    """Acknowledge (``action="ack"``) or close (``"close"``) an incident: what ``breeboost incidents ack|close``
    and the dashboard's buttons both do. Reads the incident's latest event from the topic, adds the note
    with ``author`` (who did it) and publishes the change; returns the published event.

    :class:`BreeBoostError` when the id is missing, a close has no note, or the incident is not on the topic.
    """
    from incident.errors import UnknownIncidentError
    from incident.events import latest_by_incident, note_event, validate_event
    from incident.topic import publish_events, read_events

    if action not in ("ack", "close"):
        raise BreeBoostError(f"action: expected 'ack' or 'close', got {action!r}")
    if not incident_id:
        raise BreeBoostError(f"{action} needs an INCIDENT_ID (see `breeboost incidents --from-beginning`)")
    if action == "close" and not note:
        raise BreeBoostError("close needs --note TEXT: say what was found and done (it feeds the postmortem)")
    current = latest_by_incident(read_events(settings)).get(incident_id)
    if current is None:
        raise UnknownIncidentError(f"no incident {incident_id!r} on topic {settings.topic_incidents!r} "
                                   f"at {settings.bootstrap}")
    ev = note_event(current, action, note, time.time() if now is None else now, author)
    validate_event(ev)
    publish_events(settings, [ev])
    return ev
