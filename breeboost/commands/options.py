"""Argument helpers shared by several commands."""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_model_alias", "model_dir"]


def add_model_alias(p: argparse.ArgumentParser, help_: str) -> None:
    """``--model DIR``: a shorter alias of the ``--model-dir`` setting (env BREEBOOST_MODEL_DIR)."""
    p.add_argument("--model", dest="model", default=None, metavar="DIR", help=help_ + " (alias of --model-dir)")


def model_dir(args: argparse.Namespace, settings: Any) -> str:
    """The model directory: ``--model`` if given, else the ``model_dir`` setting."""
    return args.model or settings.model_dir
