"""CLI for `breeboost rca` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_rca_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_rca(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost rca` is not implemented yet')
