"""``breeboost score``: score a data file offline with a trained model."""
from __future__ import annotations

import argparse
from typing import Any

from breeboost.commands.options import add_model_alias, model_dir

__all__ = ["add_score_arguments", "run_score"]


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    add_model_alias(p, "model directory to score with")
    p.add_argument("--data", metavar="FILE", required=True, help="rows to score: .csv, .jsonl or .parquet")
    p.add_argument("--out", metavar="FILE", required=True,
                   help="output .csv or .jsonl: the input columns plus fraud_probability, fraud_label, error, "
                        "error_detail (rows that fail validation get the error instead of a score)")
    p.add_argument("--explain", action="store_true",
                   help="add a reasons column: the top --reasons-k features by exact TreeSHAP contribution "
                        "(feature, value, contribution in log-odds, largest first) of the rows the reasons setting "
                        "selects (flagged by default), exactly as the stream's score records carry them (a JSON "
                        "list in .jsonl, its JSON text in .csv and .parquet)")


def run_score(args: argparse.Namespace, settings: Any) -> int:
    import numpy as np

    from models.io import read_table, write_table
    from models.scorer import Scorer
    from models.validation import validate_columns

    scorer = Scorer.load(model_dir(args, settings), nthread=settings.nthread)
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
    out = {k: v for k, v in columns.items()
           if k not in ("fraud_probability", "fraud_label", "error", "error_detail", "reasons")}
    out.update({"fraud_probability": probability, "fraud_label": label, "error": error, "error_detail": detail})
    if args.explain:
        out["reasons"] = _reasons_column(scorer, scored, validated.accepted, n, settings, args.out)
    write_table(out, args.out)
    flagged = int(scored.label.sum())
    print(f"scored {validated.accepted.size} of {n} rows with model {scorer.version} "
          f"(threshold {scorer.threshold:.6g}): {flagged} flagged as fraud, {len(validated.rejects)} rejected"
          + (f" {validated.reason_counts()}" if validated.rejects else "") + f"; wrote {args.out}")
    return 0


_CHUNK = 50_000   # rows explained per pred_contribs call (bounds the DMatrix and the contributions in memory)


def _reasons_column(scorer: Any, scored: Any, accepted: Any, n: int, settings: Any, out_path: str) -> Any:
    """The ``reasons`` column: the stream's reasons (:class:`models.explain.Explainer`) of the rows the
    ``reasons`` setting selects, ``None`` elsewhere."""
    import numpy as np
    import orjson

    from breeboost.errors import BreeBoostError
    from models.explain import Explainer, select_rows

    if settings.reasons == "none":
        raise BreeBoostError("--explain with reasons none explains no row: use --reasons flagged, review or all")
    explainer = Explainer.of(scorer, settings.reasons_k)
    rows = select_rows(settings.reasons, scored.probability, scored.label, settings.review_threshold)
    as_json = not str(out_path).lower().endswith((".jsonl", ".json", ".ndjson"))
    column = np.full(n, None, dtype=object)
    for lo in range(0, rows.size, _CHUNK):
        part = explainer.reasons(scored.features, rows[lo:lo + _CHUNK])
        for row, reasons in zip(part.rows.tolist(), part.as_lists()):
            column[accepted[row]] = orjson.dumps(reasons).decode() if as_json else reasons
    return column
