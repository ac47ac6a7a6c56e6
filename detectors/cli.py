"""CLI for `breeboost report` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_report(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost report` is not implemented yet')
