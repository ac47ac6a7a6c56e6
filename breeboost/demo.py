"""CLI for `breeboost demo` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_demo(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost demo` is not implemented yet')
