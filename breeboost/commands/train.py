"""``breeboost train``: train the XGBoost fraud model on a data file or on simulated transactions.

The model goes into the registry of ``--out`` (:mod:`models.registry`) as a new version, the champion when
there is none (``--promote``: the champion in any case, as a switch the worker follows). A new (absent or
empty) ``--out`` gets a plain artifact directory, a registry of one (``DIR/metadata.json`` as before the
registry); the second version turns it into ``versions/`` and ``registry.json``.

Heavy imports (xgboost) stay inside :func:`run_train`, so ``breeboost --help`` is fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_train_arguments", "run_train", "simulated_rows", "register_model", "DEFAULT_SIM_COUNT"]

DEFAULT_SIM_COUNT = 500_000


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", help="training data: .csv, .jsonl or .parquet with the spec's label "
                   "column (default: generate PaySim transactions with the simulator)")
    p.add_argument("--spec", metavar="SPEC.toml", help="feature spec (default: the PaySim spec shipped with BreeBoost)")
    p.add_argument("--out", metavar="DIR", help="model registry to add the version to (default: --model-dir); "
                   "it becomes the champion when there is none")
    p.add_argument("--promote", action="store_true", help="make the new version the champion even if there is one")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator, the split and XGBoost [default 0]")
    p.add_argument("--split", choices=("time", "random"), default="time",
                   help="time: train on the earliest rows, validate and test on later ones (default); random: shuffle")
    p.add_argument("--rows", "--sim-count", dest="rows", type=int, default=None, metavar="N",
                   help=f"without --data: simulator rows to generate [default {DEFAULT_SIM_COUNT}]")
    p.add_argument("--n-estimators", type=int, default=400, metavar="N", help="most boosting rounds [default 400]")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="XGBoost training threads [default 2]")
    p.add_argument("--json", action="store_true", help="print the training summary as JSON on stdout "
                   "(progress lines go to stderr)")


def run_train(args: argparse.Namespace, settings: Any) -> int:
    from models.errors import DataError
    from models.io import read_table
    from models.spec import load_spec
    from models.training import TrainConfig, train_model

    out_dir = args.out or settings.model_dir
    progress_stream = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(f"train: {line}", file=progress_stream, flush=True)

    spec = load_spec(args.spec)
    try:
        config = TrainConfig(seed=args.seed, split=args.split, n_estimators=args.n_estimators, nthread=args.threads)
    except ValueError as e:
        raise DataError(f"invalid training option: {e}") from None
    t0 = time.perf_counter()
    if args.data:
        if args.rows is not None:
            raise DataError("--rows/--sim-count only apply without --data")
        columns = read_table(args.data)
        source = str(args.data)
        say(f"read {source} ({time.perf_counter() - t0:.1f} s)")
    else:
        count = DEFAULT_SIM_COUNT if args.rows is None else args.rows
        if count < 1:
            raise DataError(f"--rows must be >= 1, got {count}")
        columns = simulated_rows(count, args.seed)
        source = f"simulator(count={count}, seed={args.seed})"
        say(f"generated {count} simulator rows with seed {args.seed} ({time.perf_counter() - t0:.1f} s)")
    model = train_model(columns, spec, config, progress=say, source=source)
    version, state = register_model(model, out_dir, by="breeboost train", promote=args.promote)
    role = "champion" if state.champion == version else f"a version; the champion stays {state.champion}"
    say(f"wrote {out_dir} (version {version}, {role}, threshold {model.threshold:.6g}, "
        f"{time.perf_counter() - t0:.1f} s in all)")
    if args.json:
        print(json.dumps({"model_dir": str(out_dir), "version": version, "champion": state.champion,
                          "threshold": model.threshold, "metrics": model.metadata["metrics"],
                          "training": model.metadata["training"]}))
    return 0


def register_model(model: Any, out_dir: Any, *, by: str, promote: bool = False, challenger: bool = False,
                   reason: str = "") -> tuple[str, Any]:
    """Save a trained model (:class:`models.training.TrainedModel`) into a staging directory of ``out_dir``
    and add it to the registry there; returns its version and the :class:`models.registry.RegistryState`."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from models.registry import Registry

    out = Path(out_dir)
    if not challenger and (not out.exists() or (out.is_dir() and not any(out.iterdir()))):
        # a new directory gets a plain artifact, a registry of one (models.registry): the layout every
        # reader of DIR/metadata.json knew; it becomes versions/ + registry.json when a second version
        # comes. Written beside it and renamed into place, so it is whole or absent.
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
        try:
            version = model.save(staging)
            if out.exists():
                out.rmdir()
            os.rename(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return version, Registry(out).state()
    out.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=out_dir)
    try:
        version = model.save(staging)
        registry = Registry(out_dir)
        state = registry.add(staging, by=by, challenger=challenger, reason=reason)
        if promote and state.champion != version:
            state = registry.promote(version, by=by, reason=reason or "trained with --promote")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version, state


def simulated_rows(count: int, seed: int) -> dict:
    """``count`` labelled simulator transactions with ``seed``: the default training data."""
    from simulator import generate

    return generate(count, seed)
