"""Decoding: a micro-batch of ``transactions`` messages becomes one :class:`ColumnBatch`, whatever path.

The usual batch (every message a transaction object or an envelope of them, fields of the right JSON
types) is decoded straight into columns by :class:`streams.decode.TypedDecoder`, with no dict per
transaction. Any other batch is decoded one message at a time (:func:`streams.decode.decode_messages`,
which gives each odd message its reason) and its records are pulled into the same columns. Everything
after decoding (de-duplication, validation, scoring, windows) runs once, on the column batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from breeboost.rejections import Rejection
from models.validation import pull_columns
from streams.decode import TypedDecoder, decode_messages

__all__ = ["BatchDecoder", "ColumnBatch", "typed_decoder"]


@dataclass
class ColumnBatch:
    """The transactions of a micro-batch as ``columns`` (field -> the value of each transaction, ``None``
    where one lacks it), each one's message index (``origins``) and position in its envelope (``items``,
    ``None`` for a whole message), and the messages that did not decode (``rejections``).
    :meth:`record` gives a transaction's original record, for its dead letter."""
    columns: dict[str, list]
    origins: list[int]
    items: list[int | None]
    rejections: list[Rejection] = field(default_factory=list)
    source: Callable[[int], Any] = lambda row: None   # original record of a row as decoded
    rows: list[int] | None = None                      # decoded row of each row kept (None: all, in order)

    def __len__(self) -> int:
        return len(self.origins)

    def record(self, j: int) -> Any:
        """The original record of transaction ``j`` (of those kept)."""
        return self.source(j if self.rows is None else self.rows[j])

    def keep(self, kept: list[int]) -> None:
        """Keep only the transactions at positions ``kept`` (in order)."""
        self.columns = {k: [v[j] for j in kept] for k, v in self.columns.items()}
        self.origins = [self.origins[j] for j in kept]
        self.items = [self.items[j] for j in kept]
        self.rows = kept if self.rows is None else [self.rows[j] for j in kept]


class BatchDecoder:
    """Decode micro-batches of ``spec``'s transactions into :class:`ColumnBatch` (see the module docstring).

    >>> from models.spec import load_spec
    >>> d = BatchDecoder(load_spec(), max_message_bytes=1000)
    >>> b = d.decode([b'{"transaction_id": "t1", "amount": 5}', b'[7]'])
    >>> b.columns["transaction_id"], b.origins, [(r.message, r.item, r.reason) for r in b.rejections]
    (['t1'], [0], [(1, 0, 'not_an_object')])
    >>> b.record(0)
    {'transaction_id': 't1', 'amount': 5}
    """

    def __init__(self, spec: Any, max_message_bytes: int, max_envelope_items: int | None = None) -> None:
        self.spec = spec
        self.max_message_bytes = max_message_bytes
        self.max_envelope_items = max_envelope_items
        self.typed = typed_decoder(spec)
        # what the stages after decoding read: de-duplication reads transaction_id
        self.names = list(dict.fromkeys([*spec.required_fields, *(c for c in (spec.id, spec.event_time) if c),
                                         "transaction_id"]))

    def decode(self, values: list[bytes | None]) -> ColumnBatch:
        typed = self.typed.decode(values, self.max_message_bytes, self.max_envelope_items) if self.typed else None
        if typed is not None:   # the usual batch: columns straight from the bytes
            originals = _Originals(values)
            origins, items = typed.origins, typed.items
            return ColumnBatch(typed.columns, origins, items,
                               source=lambda row: originals.record(origins[row], items[row]))
        decoded = decode_messages(values, self.max_message_bytes, self.max_envelope_items)
        records = decoded.records
        return ColumnBatch(pull_columns(records, self.names), decoded.origins, decoded.items, decoded.rejects,
                           source=records.__getitem__)


def typed_decoder(spec: Any) -> TypedDecoder | None:
    """The columnar decoder of ``spec``'s transactions: its required fields with their JSON types, the
    transaction_id (de-duplication's key) and the event time optional. ``None`` when the spec names
    another id column (de-duplication reads transaction_id; such a stream takes the general path)."""
    if spec.id not in (None, "transaction_id"):
        return None
    strings = [f for f in spec.required_fields if f in spec.category_map or f in spec.categorical]
    numeric = [f for f in spec.required_fields if f not in strings]
    optional_numeric = [spec.event_time] if spec.event_time and spec.event_time not in spec.required_fields else []
    optional_strings = ["transaction_id"] if "transaction_id" not in spec.required_fields else []
    return TypedDecoder(numeric, strings, optional_numeric, optional_strings)


class _Originals:
    """The original record of a transaction, for its dead letter, when the batch was decoded into columns:
    its message parsed again (once) with orjson, as :func:`streams.decode.decode_messages` gives it."""

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self._docs: dict[int, Any] = {}

    def record(self, origin: int, item: int | None) -> Any:
        doc = self._docs.get(origin)
        if doc is None:
            doc = self._docs[origin] = orjson.loads(self.values[origin])
        return doc if item is None else doc[item]
