"""``breeboost explain``: why one transaction got its score - its reason codes, as the stream writes them.

    breeboost explain --model DIR --data FILE --id TX [--json]

The row whose id column (the spec's ``id``, ``transaction_id`` for PaySim) is ``TX`` is validated, scored
and explained by the code the scoring stage runs (:class:`models.explain.Explainer`): the top
``--reasons-k`` features by exact TreeSHAP contribution, largest first, and the base value. Every row is
explained here, flagged or not.
"""
from __future__ import annotations

import argparse
from typing import Any

from breeboost.commands.options import add_model_alias, model_dir

__all__ = ["add_explain_arguments", "run_explain"]


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    add_model_alias(p, "model directory to explain with")
    p.add_argument("--data", metavar="FILE", required=True, help="rows: .csv, .jsonl or .parquet")
    p.add_argument("--id", dest="transaction_id", metavar="TX", required=True,
                   help="the transaction to explain (its value in the spec's id column)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the score record's fields and its reasons")


def run_explain(args: argparse.Namespace, settings: Any) -> int:
    import numpy as np
    import orjson

    from breeboost.errors import BreeBoostError
    from models.explain import Explainer
    from models.io import read_table
    from models.scorer import Scorer
    from models.validation import validate_columns

    scorer = Scorer.load(model_dir(args, settings), nthread=settings.nthread)
    spec = scorer.spec
    if spec.id is None:
        raise BreeBoostError(f"spec {spec.name!r} declares no id column: transactions cannot be named")
    columns = read_table(args.data)
    if spec.id not in columns:
        raise BreeBoostError(f"{args.data!r} has no id column {spec.id!r}")
    ids = np.asarray(columns[spec.id]).astype(str)
    where = np.flatnonzero(ids == args.transaction_id)
    if not where.size:
        raise BreeBoostError(f"no row of {args.data!r} has {spec.id} {args.transaction_id!r}")
    row = {k: np.asarray(v)[where[:1]] for k, v in columns.items()}
    validated = validate_columns(row, spec)
    if validated.rejects:
        r = validated.rejects[0]
        raise BreeBoostError(f"{args.transaction_id}: not scored, the stream dead-letters it ({r.reason}: {r.detail})")
    scored = scorer.score_columns(validated.columns)
    reasons = Explainer.of(scorer, settings.reasons_k).reasons(scored.features, np.array([0]))
    doc = {"transaction_id": args.transaction_id, "fraud_probability": float(scored.probability[0]),
           "fraud_label": int(scored.label[0]), "threshold": scorer.threshold, "model_version": scorer.version,
           "reasons": reasons.as_lists()[0], "base_value": float(reasons.base_value[0])}
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json else _render(doc))
    return 0


def _render(doc: dict) -> str:
    lines = [f"{doc['transaction_id']}: fraud_probability {doc['fraud_probability']:.6g}, fraud_label "
             f"{doc['fraud_label']} (threshold {doc['threshold']:.6g}, model {doc['model_version']})",
             f"base value {doc['base_value']:+.4f} log-odds; top reasons (contribution in log-odds, largest first):"]
    for i, r in enumerate(doc["reasons"], 1):
        value = "missing" if r["value"] is None else f"{r['value']:.10g}"
        lines.append(f"  {i}. {r['feature']} = {value}: {r['contribution']:+.4f}")
    return "\n".join(lines)
