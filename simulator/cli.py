"""CLI for `breeboost simulate` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_simulate(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost simulate` is not implemented yet')
