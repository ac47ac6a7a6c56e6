"""``breeboost model``: the model registry (:mod:`models.registry`): list, show, promote, rollback, retrain.

``promote`` and ``rollback`` switch the champion atomically; the worker follows within its 2 s poll. Each
switch is recorded in ``registry.json``'s history, logged, and published on the ``models`` topic
(``--no-announce``: not published; a broker that cannot be reached is a warning, never an undone switch).
``retrain`` (:mod:`breeboost.commands.retrain`) builds a challenger from the topics' labelled history.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from typing import Any

from breeboost.commands.options import add_model_alias, model_dir
from breeboost.logs import log

__all__ = ["add_model_arguments", "run_model", "announce", "announce_quietly", "describe", "SwitchAnnouncer"]

_log = logging.getLogger("breeboost.model")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False   # an action's own flags (--reason) are not abbreviations of settings (--reasons)
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="the registry's versions, champion and challenger")
    ls.add_argument("--json", action="store_true", help="print {champion, challenger, previous, versions: [...]}")
    show = sub.add_parser("show", help="one version: metrics, threshold, training data, role")
    show.add_argument("version")
    show.add_argument("--json", action="store_true", help="print the version's description as JSON")
    promote = sub.add_parser("promote", help="make VERSION the champion (the worker follows)")
    promote.add_argument("version")
    rollback = sub.add_parser("rollback", help="make the champion before this one champion again")
    for q in (promote, rollback):
        q.add_argument("--reason", default="", help="why (recorded in the history and the event)")
        q.add_argument("--by", default=None, help="who (default: the login name)")
        q.add_argument("--no-announce", action="store_true", help="do not publish the switch on the models topic")
    from breeboost.commands.retrain import add_retrain_arguments

    add_retrain_arguments(sub.add_parser("retrain", help="train a challenger on the topics' labelled "
                                         "transactions and compare it with the champion on the newest ones"))
    add_model_alias(p, "model registry directory")
    for q in sub.choices.values():
        q.add_argument("--model", dest="model", default=argparse.SUPPRESS, metavar="DIR",
                       help="model registry directory (alias of --model-dir)")
        add_settings_after_action(q, ("kafka", "topics", "process", "model"))


def add_settings_after_action(p: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """The settings flags again on an action's parser, so they may follow it (``model promote V --bootstrap
    H:P``); ``SUPPRESS`` keeps a flag given before the action from being reset by this parser's default."""
    from breeboost.settings import env_var, setting_fields

    g = p.add_argument_group("settings (also accepted here; see breeboost model --help)")
    for f in setting_fields(groups):
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=argparse.SUPPRESS,
                       choices=f.metadata.get("choices") or None, help=f"[env {env_var(f.name)}]")


def describe(registry: Any, version: str) -> dict[str, Any]:
    """What ``model show`` prints: a version's role, threshold, metrics and training summary."""
    from models.artifact import load_artifact

    state = registry.state()
    meta = load_artifact(registry.version_dir(version)).metadata
    role = ("champion" if version == state.champion else "challenger" if version == state.challenger
            else "previous champion" if version in state.previous else "version")
    training = meta.get("training") or {}
    return {"version": version, "role": role, "threshold": meta.get("threshold"),
            "trained_at": meta.get("created_at") or training.get("finished_at"),
            "source": training.get("source"), "rows": training.get("rows_used"),
            "metrics": (meta.get("metrics") or {}).get("test"), "retrain": meta.get("retrain"),
            "path": str(registry.version_dir(version))}


def _list(registry: Any, as_json: bool) -> int:
    state = registry.state()
    rows = [describe(registry, v) for v in state.versions]
    if as_json:
        print(json.dumps({"model_dir": str(registry.path), "champion": state.champion,
                          "challenger": state.challenger, "previous": list(state.previous), "versions": rows,
                          "history": [_switch_dict(s) for s in state.history]}, default=str))
        return 0
    if not rows:
        print(f"no model in {registry.path}: breeboost train --out {registry.path}")
        return 0
    for r in rows:
        m = r["metrics"] or {}
        auprc = f"{m['auprc']:.4f}" if isinstance(m.get("auprc"), float) else "-"
        print(f"{r['version']}  {r['role']:<17}  AUPRC {auprc}  threshold {r['threshold']:.4g}  {r['source'] or ''}")
    for s in state.history[-5:]:
        print(f"  history: {s.action} {s.version} by {s.by}{': ' + s.reason if s.reason else ''}")
    return 0


def _switch_dict(switch: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.structs.asdict(switch)


def announce(settings: Any, switch: Any, timeout_s: float = 10.0) -> None:
    """Publish a registry switch (:class:`models.registry.Switch`) on the ``models`` topic, keyed by the
    model directory; :class:`breeboost.errors.BrokerError` if the broker does not take it."""
    from breeboost.errors import BrokerError
    from breeboost.kafka_io import make_producer
    from models.registry import encode_switch

    try:
        producer = make_producer(settings, linger_ms=0)
    except Exception as e:  # kafka-python raises NoBrokersAvailable & co.
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {e}") from None
    try:
        producer.send(settings.models_topic, key=switch.model_dir.encode(), value=encode_switch(switch)).get(timeout_s)
    except Exception as e:
        raise BrokerError(f"the switch was not published on {settings.models_topic!r}: {e}") from None
    finally:
        producer.close(timeout=timeout_s)


class SwitchAnnouncer:
    """The worker's ``announce`` of :class:`streams.reload.ModelWatcher`: publishes the switch it served
    (``{"action": "served", "from", "to", "model_dir", "time", "worker"}``) on the ``models`` topic without
    waiting (the producer sends in its own thread; the event loop never blocks on the broker)."""

    def __init__(self, settings: Any, worker: str = "") -> None:
        self.settings = settings
        self.worker = worker
        self._producer: Any = None

    def __call__(self, switch: dict) -> None:
        import orjson

        from breeboost.kafka_io import make_producer

        if self._producer is None:
            self._producer = make_producer(self.settings, linger_ms=0)
        doc = {"action": "served", **switch, "worker": self.worker}
        self._producer.send(self.settings.models_topic, key=switch["model_dir"].encode(), value=orjson.dumps(doc))


def _switched(settings: Any, state: Any, args: argparse.Namespace) -> int:
    switch = state.history[-1]
    log(_log, "model switch", **_switch_dict(switch))
    print(f"{switch.action} {switch.version}: champion {switch.champion} (was {switch.previous_champion}); "
          "the worker follows within 2 s")
    if not args.no_announce:
        announce_quietly(settings, switch)
    return 0


def announce_quietly(settings: Any, switch: Any) -> bool:
    """:func:`announce`, with a broker that does not take it a warning (the switch is done)."""
    from breeboost.errors import BrokerError

    try:
        announce(settings, switch)
    except BrokerError as e:
        print(f"warning: {e} (the switch is done and in the registry's history)", file=sys.stderr)
        return False
    return True


def run_model(args: argparse.Namespace, settings: Any) -> int:
    from models.registry import Registry

    registry = Registry(model_dir(args, settings))
    action = args.model_command
    if action == "list":
        return _list(registry, args.json)
    if action == "show":
        desc = describe(registry, args.version)
        print(json.dumps(desc, indent=None if args.json else 2, default=str))
        return 0
    if action == "retrain":
        from breeboost.commands.retrain import run_retrain

        return run_retrain(args, settings, registry)
    by = args.by or getpass.getuser()
    if action == "promote":
        return _switched(settings, registry.promote(args.version, by=by, reason=args.reason), args)
    return _switched(settings, registry.rollback(by=by, reason=args.reason), args)
