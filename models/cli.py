"""CLI for ``breeboost train``, ``breeboost evaluate`` and ``breeboost score`` (heavy imports stay inside
the ``run_*`` functions so ``breeboost --help`` is fast)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_train_arguments", "run_train", "add_evaluate_arguments", "run_evaluate",
           "add_score_arguments", "run_score", "DEFAULT_SIM_COUNT"]

DEFAULT_SIM_COUNT = 500_000


def _add_model_alias(p: argparse.ArgumentParser, help_: str) -> None:
    # --model-dir comes from the settings (env BREEBOOST_MODEL_DIR); --model is a shorter alias
    p.add_argument("--model", dest="model", default=None, metavar="DIR", help=help_ + " (alias of --model-dir)")


def _model_dir(args: argparse.Namespace, settings: Any) -> str:
    return args.model or settings.model_dir


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", help="training data: .csv, .jsonl or .parquet with the spec's label "
                   "column (default: generate PaySim transactions with the simulator)")
    p.add_argument("--spec", metavar="SPEC.toml", help="feature spec (default: the PaySim spec shipped with BreeBoost)")
    p.add_argument("--out", metavar="DIR", help="model directory to write (default: --model-dir)")
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
        columns = _simulate(count, args.seed)
        source = f"simulator(count={count}, seed={args.seed})"
        say(f"generated {count} simulator rows with seed {args.seed} ({time.perf_counter() - t0:.1f} s)")
    model = train_model(columns, spec, config, progress=say, source=source)
    version = model.save(out_dir)
    say(f"wrote {out_dir} (version {version}, threshold {model.threshold:.6g}, "
        f"{time.perf_counter() - t0:.1f} s in all)")
    if args.json:
        print(json.dumps({"model_dir": str(out_dir), "version": version, "threshold": model.threshold,
                          "metrics": model.metadata["metrics"], "training": model.metadata["training"]}))
    return 0


def _simulate(count: int, seed: int) -> dict:
    from simulator import generate

    return generate(count, seed)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_alias(p, "model directory to evaluate")
    p.add_argument("--data", metavar="FILE", required=True, help="labelled data: .csv, .jsonl or .parquet")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run_evaluate(args: argparse.Namespace, settings: Any) -> int:
    from models.evaluation import evaluate_scores, format_report
    from models.io import read_table
    from models.scorer import Scorer
    from models.training import labels_of
    from models.validation import validate_columns

    scorer = Scorer.load(_model_dir(args, settings), nthread=settings.nthread)
    spec = scorer.spec
    columns = read_table(args.data)
    labels, has_label = labels_of(columns, spec)
    validated = validate_columns(columns, spec)
    rejected = validated.reason_counts()
    keep = has_label[validated.accepted]
    if not keep.all():
        rejected["missing_label"] = int((~keep).sum())
    cols = {k: v[keep] for k, v in validated.columns.items()}
    scored = scorer.score_columns(cols)
    y = labels[validated.accepted[keep]]
    group = spec.type_column
    report = evaluate_scores(y, scored.probability, scorer.threshold,
                             None if group is None else scored.features.categorical[group], group)
    report.update({"rows_read": validated.n, "rejected": rejected, "model_version": scorer.version,
                   "data": str(args.data)})
    if args.json:
        print(json.dumps(report))
    else:
        print(f"model {scorer.version} on {args.data}: {validated.n} rows read")
        print(format_report(report))
    return 0


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_alias(p, "model directory to score with")
    p.add_argument("--data", metavar="FILE", required=True, help="rows to score: .csv, .jsonl or .parquet")
    p.add_argument("--out", metavar="FILE", required=True,
                   help="output .csv or .jsonl: the input columns plus fraud_probability, fraud_label, error, "
                        "error_detail (rows that fail validation get the error instead of a score)")


def run_score(args: argparse.Namespace, settings: Any) -> int:
    import numpy as np

    from models.io import read_table, write_table
    from models.scorer import Scorer
    from models.validation import validate_columns

    scorer = Scorer.load(_model_dir(args, settings), nthread=settings.nthread)
    columns = read_table(args.data)
    validated = validate_columns(columns, scorer.spec)
    scored = scorer.score_columns(validated.columns)
    n = validated.n
    probability = np.full(n, None, dtype=object)
    label = np.full(n, None, dtype=object)
    probability[validated.accepted] = scored.probability.astype(np.float64).round(6).tolist()
    label[validated.accepted] = scored.label.tolist()
    error = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    for r in validated.rejects:
        error[r.position], detail[r.position] = r.reason, r.detail
    out = {k: v for k, v in columns.items() if k not in ("fraud_probability", "fraud_label", "error", "error_detail")}
    out.update({"fraud_probability": probability, "fraud_label": label, "error": error, "error_detail": detail})
    write_table(out, args.out)
    flagged = int(scored.label.sum())
    print(f"scored {validated.accepted.size} of {n} rows with model {scorer.version} "
          f"(threshold {scorer.threshold:.6g}): {flagged} flagged as fraud, {len(validated.rejects)} rejected"
          + (f" {validated.reason_counts()}" if validated.rejects else "") + f"; wrote {args.out}")
    return 0
