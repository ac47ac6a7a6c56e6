"""One vocabulary for events that cannot be scored: the reason catalogue and the :class:`Rejection` record.

Every stage that turns an event away (decoding, de-duplication, validation) names its reason with a code
from :data:`REASONS`; the dead letter, the ``breeboost_dead_letters_total{reason}`` metric, the window
sketch's reject counts, the ``schema_error_ratio`` of drift.stats and the docs table all read this one
catalogue, so a new reason is one entry here.

>>> REASONS["duplicate_id"].stage, "missing_field" in SCHEMA_REASONS, "duplicate_id" in SCHEMA_REASONS
('dedup', True, False)
>>> count_reasons([Rejection(0, None, "invalid_json", "x"), Rejection(1, 2, "invalid_json", "y")])
{'invalid_json': 2}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

__all__ = ["Reason", "REASONS", "SCHEMA_REASONS", "STAGES", "Rejection", "count_reasons", "reasons_table_markdown"]

#: The stages that reject, in the order an event meets them (``envelope``: the envelope check after validation;
#: ``label``: the label join, which dead-letters labels, not transactions, to ``labels_dlq_topic``).
STAGES = ("decode", "dedup", "validate", "envelope", "label")


class Reason(NamedTuple):
    """A dead-letter reason: its stable ``code``, what it means, whether it says "the event does not match
    the schema" (``schema``: counted in ``schema_error_ratio``) and the stage that decides it."""
    code: str
    meaning: str
    schema: bool
    stage: str


_CATALOGUE = (
    Reason("oversized", "message larger than max_message_bytes", False, "decode"),
    Reason("invalid_json", "bytes are not valid UTF-8 JSON (binary, truncated, ...)", True, "decode"),
    Reason("not_an_object", "JSON value is not an object (or an array of objects)", True, "decode"),
    Reason("empty_envelope", "a JSON array with no transaction in it", False, "decode"),
    Reason("envelope_too_large", "a JSON array of more than max_envelope_items items (dead-lettered once, whole)",
           False, "decode"),
    Reason("malformed_envelope", "an envelope whose items are mostly not valid transactions (dead-lettered once, "
           "whole: more rejected items than valid ones plus ENVELOPE_SLACK)", False, "envelope"),
    Reason("duplicate_id", "transaction_id already seen at another offset (within the dedup horizon)", False,
           "dedup"),
    Reason("missing_field", "a required field is absent or null", True, "validate"),
    Reason("wrong_type", "a field has the wrong JSON type", True, "validate"),
    Reason("not_finite", "a number is NaN or infinite", True, "validate"),
    Reason("negative_amount", "amount is negative", False, "validate"),
    Reason("negative_value", "a balance is negative", False, "validate"),
    Reason("unknown_category", "a categorical value the model was not trained on", True, "validate"),
    Reason("label_invalid_json", "a label message whose bytes are not valid UTF-8 JSON", False, "label"),
    Reason("label_invalid", "a label that is not an object with a non-empty string transaction_id and isFraud 0, 1, "
           "true or false (and a numeric event_time, if any)", False, "label"),
)

#: Every dead-letter reason, by code.
REASONS: dict[str, Reason] = {r.code: r for r in _CATALOGUE}
#: The codes that mean a schema mismatch (``schema_error_ratio``, the schema_mismatch incident).
SCHEMA_REASONS: frozenset[str] = frozenset(r.code for r in _CATALOGUE if r.schema)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event turned away: where it is in the micro-batch (``message`` index, ``item`` inside an envelope
    or ``None`` for a whole message), why (``reason``, a code of :data:`REASONS`, and a readable
    ``detail``), and what is known of it: its ``transaction_id``, the decoded ``record`` (``None`` when the
    bytes did not decode: the dead letter then carries the raw message) and the offending ``field``."""
    message: int
    item: int | None
    reason: str
    detail: str
    transaction_id: str | None = None
    record: Any = None
    field: str | None = None


def count_reasons(rejections: Iterable[Rejection]) -> dict[str, int]:
    """Rejections per reason code, in first-seen order (the one counting function)."""
    counts: dict[str, int] = {}
    for r in rejections:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def reasons_table_markdown() -> str:
    """The docs table of dead-letter reasons, made from the catalogue.

    >>> reasons_table_markdown().splitlines()[2]
    '| `oversized` | decode | no | message larger than max_message_bytes |'
    """
    rows = ["| reason | stage | schema error | meaning |", "|---|---|---|---|"]
    rows += [f"| `{r.code}` | {r.stage} | {'yes' if r.schema else 'no'} | {r.meaning} |" for r in _CATALOGUE]
    return "\n".join(rows)
