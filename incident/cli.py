"""CLI for `breeboost incidents` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_incidents_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_incidents(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost incidents` is not implemented yet')
