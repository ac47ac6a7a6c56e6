"""Metrics of a fraud score against labels, computed with numpy, and the threshold rule.

* ``auprc``: average precision, the step-wise area under the precision-recall curve,
  ``sum_i (R_i - R_{i-1}) * P_i`` over the distinct scores from high to low (tied scores form one step;
  the same definition as scikit-learn's ``average_precision_score``).
* ``roc_auc``: the probability that a random fraud scores above a random legitimate transaction (ties
  count one half), from average ranks.
* at the decision threshold (label = ``probability >= threshold``): the confusion counts, precision,
  recall and F1; ``precision_at_k``: precision among the ``k`` highest scores (ties at the boundary
  broken by row order).
* :func:`choose_threshold`: the rule used at training time, on the validation slice: the cut that
  maximises F1 (ties: the highest cut, fewer alerts), placed halfway between the lowest score flagged and
  the next lower distinct score, so that a score flagged on validation is flagged in serving.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
>>> round(average_precision(y, s), 4), round(roc_auc(y, s), 4)
(0.9167, 0.8889)
>>> choose_threshold(y, s)
0.275
>>> r = evaluate_scores(y, s, 0.5, ks=(3,))
>>> r["at_threshold"]["tp"], r["at_threshold"]["fp"], r["at_threshold"]["precision"], r["precision_at_k"]
(2, 0, 1.0, {'3': 0.6667})
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["average_precision", "roc_auc", "choose_threshold", "confusion", "precision_at_k",
           "evaluate_scores", "format_report", "PRECISION_AT_K", "DEFAULT_THRESHOLD"]

PRECISION_AT_K = (100, 1000)
#: threshold used when the validation slice has no fraud at all (nothing to choose from)
DEFAULT_THRESHOLD = 0.5


def _arrays(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} != {s.size}")
    return y, s


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score (high to low), and those scores."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ys.size - 1]  # last index of each run of tied scores
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    return tps, fps, ss[last]


def average_precision(labels: Any, scores: Any) -> float:
    """Area under the precision-recall curve (average precision); NaN without positives."""
    y, s = _arrays(labels, scores)
    pos = int(y.sum())
    if pos == 0 or y.size == 0:
        return float("nan")
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve; NaN unless both classes are present."""
    y, s = _arrays(labels, scores)
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = float(avg_rank[inverse][y == 1].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def choose_threshold(labels: Any, scores: Any) -> float:
    """The F1-maximising threshold (see the module docstring); ``DEFAULT_THRESHOLD`` without positives."""
    y, s = _arrays(labels, scores)
    pos = int(y.sum())
    if pos == 0:
        return DEFAULT_THRESHOLD
    tps, fps, cuts = _curve(y, s)
    f1 = 2 * tps / (tps + fps + pos)
    best = int(np.argmax(f1))  # first maximum = highest cut
    if best + 1 < cuts.size:
        mid = (cuts[best] + cuts[best + 1]) / 2.0
        return float(mid if mid > cuts[best + 1] else cuts[best])
    return float(cuts[best])


def confusion(labels: Any, scores: Any, threshold: float) -> dict[str, Any]:
    """Counts and precision/recall/F1 of ``label = score >= threshold``."""
    y, s = _arrays(labels, scores)
    flagged = s >= threshold
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int(y.size - tp - fp - fn)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "flagged": tp + fp, "precision": round(precision, 6),
            "recall": round(recall, 6), "f1": round(f1, 6)}


def precision_at_k(labels: Any, scores: Any, k: int) -> float:
    """Fraction of fraud among the ``k`` highest scores (``k`` capped at the number of rows)."""
    y, s = _arrays(labels, scores)
    k = min(int(k), y.size)
    if k <= 0:
        return float("nan")
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean())


def _r(x: float) -> float | None:
    return None if x != x else round(float(x), 6)


def evaluate_scores(labels: Any, scores: Any, threshold: float, groups: Any = None, group_name: str | None = None,
                    ks: Sequence[int] = PRECISION_AT_K) -> dict[str, Any]:
    """The evaluation report (a JSON-able dict), with a per-group breakdown when ``groups`` is given."""
    y, s = _arrays(labels, scores)
    n, pos = int(y.size), int(y.sum())
    ks_used = sorted({min(int(k), n) for k in ks if n}) or []
    report: dict[str, Any] = {
        "rows": n, "positives": pos, "prevalence": _r(pos / n) if n else None,
        "threshold": float(threshold),
        "auprc": _r(average_precision(y, s)), "roc_auc": _r(roc_auc(y, s)),
        "at_threshold": confusion(y, s, threshold),
        "precision_at_k": {str(k): _r(round(precision_at_k(y, s, k), 4)) for k in ks_used},
        "score_mean": _r(float(s.mean())) if n else None,
    }
    if groups is not None:
        g = np.asarray(groups).astype(str)
        by: dict[str, Any] = {}
        for value in np.unique(g).tolist():
            m = g == value
            c = confusion(y[m], s[m], threshold)
            by[value] = {"rows": int(m.sum()), "positives": int(y[m].sum()), "auprc": _r(average_precision(y[m], s[m])),
                         "flagged": c["flagged"], "tp": c["tp"], "precision": c["precision"], "recall": c["recall"]}
        report["by_group"] = {"column": group_name, "groups": by}
    return report


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def format_report(report: dict[str, Any]) -> str:
    """The report as readable text (what ``breeboost evaluate`` prints without ``--json``)."""
    a = report["at_threshold"]
    lines = [
        f"rows {report['rows']}  fraud {report['positives']}  prevalence {_fmt(report['prevalence'])}",
        f"AUPRC {_fmt(report['auprc'])}  ROC AUC {_fmt(report['roc_auc'])}",
        f"at threshold {report['threshold']:.6g}: precision {_fmt(a['precision'])}  recall {_fmt(a['recall'])}  "
        f"F1 {_fmt(a['f1'])}  (tp {a['tp']} fp {a['fp']} fn {a['fn']} tn {a['tn']})",
        "precision@k: " + "  ".join(f"@{k} {_fmt(v)}" for k, v in report["precision_at_k"].items()),
    ]
    if report.get("rejected"):
        lines.append("rejected rows: " + ", ".join(f"{k} {v}" for k, v in sorted(report["rejected"].items())))
    by = report.get("by_group")
    if by:
        lines.append(f"by {by['column']}:")
        width = max(len(k) for k in by["groups"]) if by["groups"] else 4
        for name, g in by["groups"].items():
            lines.append(f"  {name:<{width}}  rows {g['rows']:>8}  fraud {g['positives']:>6}  AUPRC {_fmt(g['auprc']):>6}"
                         f"  flagged {g['flagged']:>6}  precision {_fmt(g['precision'])}  recall {_fmt(g['recall'])}")
    return "\n".join(lines)
