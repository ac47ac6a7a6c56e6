"""The envelope bound: one hostile message cannot flood the dead-letter topic.

An envelope's items are dead-lettered one by one, so that a few bad transactions in a batch are each
reported with their reason. An envelope whose items are mostly not transactions (a JSON array of numbers,
of empty objects, ...) would make one dead letter per item: 300,000 of them from one 600 kB message. Such an
envelope is dead-lettered once, whole, as ``malformed_envelope``, when its rejected items outnumber its
valid ones by more than ``ENVELOPE_SLACK``. So no message gives more output records than its valid
transactions plus ``ENVELOPE_SLACK + 1`` (one score message for the envelope, at most ``valid + SLACK``
dead letters); an envelope of more than ``max_envelope_items`` items is one ``envelope_too_large`` dead
letter at decoding, before any item is looked at.

>>> from breeboost.rejections import Rejection
>>> rej = [Rejection(0, j, "not_an_object", "x") for j in range(20)] + [Rejection(1, 0, "wrong_type", "y")]
>>> sorted(malformed_envelopes(np.array([1, 1, 2]), rej, slack=16))
[0]
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from breeboost.rejections import Rejection

__all__ = ["ENVELOPE_SLACK", "collapse", "malformed_envelopes"]

#: Rejected items an envelope may have beyond its valid ones and still be dead-lettered item by item.
ENVELOPE_SLACK = 16


def malformed_envelopes(accepted_origins: np.ndarray, rejections: Iterable[Rejection],
                        slack: int = ENVELOPE_SLACK) -> set[int]:
    """The envelopes (message indices) whose rejected items exceed their accepted ones plus ``slack``."""
    rejected: dict[int, int] = {}
    for r in rejections:
        if r.item is not None:
            rejected[r.message] = rejected.get(r.message, 0) + 1
    if not rejected or max(rejected.values()) <= slack:   # the usual case: no counting of the accepted
        return set()
    origins, counts = np.unique(accepted_origins, return_counts=True)
    valid = dict(zip(origins.tolist(), counts.tolist()))
    return {m for m, n in rejected.items() if n > valid.get(m, 0) + slack}


def collapse(bad: set[int], rejections: list[Rejection], accepted_origins: np.ndarray
             ) -> tuple[list[Rejection], np.ndarray]:
    """The rejections with each envelope of ``bad`` as one ``malformed_envelope`` rejection (its items'
    ones dropped), and the mask of the accepted rows that stay (those of other messages)."""
    kept: list[Rejection] = []
    first: dict[int, Rejection] = {}
    dropped: dict[int, int] = {}
    for r in rejections:
        if r.message in bad:
            first.setdefault(r.message, r)
            dropped[r.message] = dropped.get(r.message, 0) + 1
        else:
            kept.append(r)
    stay = ~np.isin(accepted_origins, np.fromiter(bad, dtype=np.int64, count=len(bad)))
    for m in sorted(bad):
        valid = int(np.count_nonzero(accepted_origins == m))
        example = first[m]
        kept.append(Rejection(m, None, "malformed_envelope",
                              f"{dropped[m]} of {dropped[m] + valid} items rejected (first: item {example.item} "
                              f"{example.reason}: {example.detail})"[:300]))
    return kept, stay
