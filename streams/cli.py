"""CLI for `breeboost worker` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_worker(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost worker` is not implemented yet')
