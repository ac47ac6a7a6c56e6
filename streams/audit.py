"""CLI for `breeboost audit` (work in progress)."""
from __future__ import annotations

import argparse

from breeboost.errors import BreeBoostError


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_audit(args: argparse.Namespace, settings) -> int:
    raise BreeBoostError('`breeboost audit` is not implemented yet')
