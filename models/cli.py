"""CLI for `breeboost train, evaluate, score` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_train(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost train` is not implemented yet')


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_evaluate(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost evaluate` is not implemented yet')


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_score(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost score` is not implemented yet')
