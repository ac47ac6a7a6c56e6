"""``breeboost evaluate``: evaluate a trained model on a labelled data file."""
from __future__ import annotations

import argparse
import json
from typing import Any

from breeboost.commands.options import add_model_alias, model_dir

__all__ = ["add_evaluate_arguments", "run_evaluate"]


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    add_model_alias(p, "model directory to evaluate")
    p.add_argument("--data", metavar="FILE", required=True, help="labelled data: .csv, .jsonl or .parquet")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run_evaluate(args: argparse.Namespace, settings: Any) -> int:
    from models.evaluation import evaluate_scores, format_report
    from models.io import read_table
    from models.scorer import Scorer
    from models.training import labels_of
    from models.validation import validate_columns

    scorer = Scorer.load(model_dir(args, settings), nthread=settings.nthread)
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
