"""The ``breeboost`` console script: one subcommand per tool, settings flags generated from :class:`Settings`.

Each subcommand is a module of :mod:`breeboost.commands` with two functions, ``add_<name>_arguments(parser)``
and ``run_<name>(args, settings) -> int``; this module only wires them up. Modules named here must not
import heavy libraries (xgboost, faust) at import time, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import fields
from typing import Sequence

from breeboost.errors import BreeBoostError, SettingsError
from breeboost.logs import configure_from_settings, log
from breeboost.settings import Settings, env_var, setting_fields

# name: (module, settings groups whose flags it takes, logs to stdout?, one-line help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], bool, str]] = {
    "broker": ("breeboost.commands.broker", ("topics", "process"), True,
               "start the embedded Kafka-protocol broker (Tansu) and create the project's topics"),
    "simulate": ("breeboost.commands.simulate", ("kafka", "topics", "process"), False,
                 "generate PaySim-like transactions to Kafka or to a file, with drift/bad-input scenarios"),
    "replay": ("breeboost.commands.replay", ("kafka", "topics", "process"), False,
               "stream your own labelled file (CSV, JSONL, Parquet) to transactions and labels, in file order"),
    "train": ("breeboost.commands.train", ("process", "model"), False, "train the XGBoost fraud model on a data file"),
    "model": ("breeboost.commands.model", ("kafka", "topics", "process", "model"), False,
              "the model registry: list, show, promote, rollback, retrain from the topics' labelled history"),
    "reference": ("breeboost.commands.reference", ("kafka", "topics", "process", "model"), False,
                  "drift reference: rebaseline --windows A..B accepts those windows as the new reference"),
    "evaluate": ("breeboost.commands.evaluate", ("process", "model"), False, "evaluate a trained model on a labelled data file"),
    "score": ("breeboost.commands.score", ("process", "model"), False, "score a data file offline with a trained model"),
    "explain": ("breeboost.commands.explain", ("process", "model"), False,
                "why one transaction got its score: its top features by exact TreeSHAP contribution"),
    "report": ("breeboost.commands.report", ("kafka", "topics", "process", "model", "streams"), False,
               "compute window drift statistics over a file or the drift.stats topic; write JSON and HTML"),
    "worker": ("breeboost.commands.worker", ("kafka", "topics", "process", "model", "streams"), True,
               "run the Faust worker: scoring + drift agents and/or the incident agent"),
    "incidents": ("breeboost.commands.incidents", ("kafka", "topics", "process"), False,
                  "tail the incidents topic; ack or close an incident"),
    "rca": ("breeboost.commands.rca", ("kafka", "topics", "process"), False,
            "root-cause analysis over the incident log and drift.stats history"),
    "audit": ("breeboost.commands.audit", ("kafka", "topics", "process"), False,
              "prove produced == scored + dead-lettered, by transaction id, from the topics"),
    "demo": ("breeboost.commands.demo", ("topics", "process", "model", "streams"), True,
             "run the whole system on the embedded broker with a scripted drift scenario"),
    "dashboard": ("breeboost.commands.dashboard", ("kafka", "topics", "process"), False,
                  "serve the operator dashboard (Streamlit): live throughput, drift, model health, incidents"),
}


def add_settings_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """One flag per setting in ``groups``; the help names the env variable and the default."""
    titles = {"kafka": "Kafka connection", "topics": "topics", "process": "logging and metrics",
              "model": "model", "streams": "stream processing"}
    for group in groups:
        g = parser.add_argument_group(f"settings: {titles[group]}")
        for f in setting_fields((group,)):
            default = f.default
            shown = "(unset)" if f.name == "sasl_password" else repr(str(default))
            kwargs = {"dest": f.name, "default": None, "metavar": f.name.split("_")[-1].upper(),
                      "help": f"{f.metadata['help']} [env {env_var(f.name)}; default {shown}]"}
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
                kwargs.pop("metavar")
            g.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breeboost",
        description="BreeBoost: real-time fraud scoring, drift monitoring and incident response on Kafka. "
                    "Every setting can also come from a BREEBOOST_* environment variable.")
    parser.add_argument("--version", action="version", version="breeboost 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, groups, _, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        mod = importlib.import_module(module)
        getattr(mod, f"add_{name}_arguments")(p)
        add_settings_arguments(p, groups)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in fields(Settings)}
    return Settings.from_env(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module, _, to_stdout, _ = COMMANDS[args.command]
    try:
        settings = settings_from_args(args)
    except SettingsError as e:
        print(f"breeboost {args.command}: invalid setting: {e}", file=sys.stderr)
        return 2
    configure_from_settings(settings, stream=sys.stdout if to_stdout else sys.stderr)
    run = getattr(importlib.import_module(module), f"run_{args.command}")
    try:
        return int(run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except BreeBoostError as e:
        log(logging.getLogger("breeboost.cli"), "failed", level=logging.ERROR, command=args.command, error=str(e))
        print(f"breeboost {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
