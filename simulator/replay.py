"""Replay a user's labelled table to Kafka in file order: transactions, then their labels ``label_delay`` later.

:class:`Replayer` is a :class:`simulator.producer.Publisher` whose slices come from a table instead of the
generator, so pacing (``rate``), envelopes (``batch``), the label queue and the delivery counting are the
simulator's own. What the table's columns mean comes from :class:`ReplayTable` (built by ``breeboost
replay`` from the feature spec; this package imports no models):

- the **label** column never goes to ``transactions``; each row's label goes to ``labels`` as
  ``{"transaction_id", "isFraud", "labelled_at"}`` keyed by ``transaction_id``, as the simulator's do. A
  row whose label is missing or not 0/1 is still sent (and scored) but gets no label: counted in the
  summary's ``unlabelled``, never dropped silently;
- every record carries ``transaction_id``: the **id** column's value as a string, or where the table has
  no id (or a row's is empty) a generated ``{id_prefix}-{row}``: deterministic (the command derives the
  prefix from the file's bytes), so replaying the same file again gives the same ids, and the worker
  dead-letters the repeats as ``duplicate_id`` instead of counting them twice;
- the **event time** column is sent as the file has it (``event_times: "file"``: run the workers with
  ``freshness_clock = stream`` so a backfill is not stale data), or re-stamped to the publish time with
  ``restamp`` or when the table lacks the column (``"publish"``, as the simulator does);
- transactions are keyed by ``transaction_id`` (spread evenly over partitions). Missing cells (``None``,
  NaN) are left out of the record, so the worker dead-letters a row that needs them (``missing_field``);
  a cell of the wrong type is sent as it is and dead-lettered by the worker (``wrong_type``), which is the
  one place that validates.

>>> import numpy as np
>>> t = ReplayTable({"amount": np.array([5.0, np.nan]), "isFraud": np.array([1, 0])}, label="isFraud",
...                 id_column=None, event_time=None, id_prefix="f0")
>>> t.transaction_ids.tolist(), t.labels.tolist(), t.records(0, 2)
(['f0-0', 'f0-1'], [1, 0], [{'amount': 5.0, 'transaction_id': 'f0-0'}, {'transaction_id': 'f0-1'}])
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import orjson

from breeboost.settings import Settings
from simulator.producer import PublishOptions, Publisher

__all__ = ["ReplayTable", "Replayer"]


@dataclass
class ReplayTable:
    """A table's columns in file order and the roles of its columns (see the module docstring).
    ``label``/``id_column``/``event_time``: column names, ``None`` (or a name the table lacks) for none."""

    columns: dict[str, np.ndarray]
    label: str | None
    id_column: str | None
    event_time: str | None
    id_prefix: str
    restamp: bool = False
    source: str = ""
    transaction_ids: np.ndarray = field(init=False, repr=False)
    labels: np.ndarray = field(init=False, repr=False)
    generated_ids: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        if not self.id_prefix:
            raise ValueError("id_prefix must be a non-empty string")
        if self.label not in self.columns:
            self.label = None
        n = len(self)
        ids = [f"{self.id_prefix}-{i}" for i in range(n)]
        if self.id_column in self.columns:
            for i, v in enumerate(self.columns[self.id_column].tolist()):
                if _present(v) and str(v) != "":
                    ids[i] = str(v)
                else:
                    self.generated_ids += 1
        else:
            self.generated_ids = n
        self.transaction_ids = np.array(ids, dtype=str) if n else np.empty(0, dtype=str)
        self.labels = np.array([_label(v) for v in self.columns[self.label].tolist()], dtype=np.int64) \
            if self.label else np.full(n, -1, dtype=np.int64)
        self._names = [c for c in self.columns if c != self.label]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def unlabelled(self) -> int:
        """Rows whose label is missing or not 0/1 (all of them without a label column)."""
        return int((self.labels < 0).sum())

    @property
    def event_times(self) -> str:
        """Where the records' event times come from: ``file``, ``publish`` (re-stamped, or the table has
        none), or ``none`` (no event-time column at all)."""
        if not self.event_time:
            return "none"
        return "file" if self.event_time in self.columns and not self.restamp else "publish"

    def records(self, start: int, n: int, now: float | None = None) -> list[dict[str, Any]]:
        """Rows ``[start, start + n)`` as transaction records (no label, present cells only)."""
        names = self._names
        values = [self.columns[c][start:start + n].tolist() for c in names]
        out = []
        for tid, row in zip(self.transaction_ids[start:start + n].tolist(), zip(*values)):
            rec = {k: v for k, v in zip(names, row) if _present(v)}
            rec["transaction_id"] = tid
            out.append(rec)
        if self.event_times == "publish":
            stamp = round(time.time() if now is None else now, 3)
            for rec in out:
                rec[self.event_time] = stamp
        return out


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def _label(v: Any) -> int:
    """0 or 1, or -1 for a missing or other value (bools and 0.0/1.0 count; the string "1" does not)."""
    if isinstance(v, (bool, int, float)) and _present(v) and v in (0, 1):
        return int(v)
    return -1


class Replayer(Publisher):
    """Publish a :class:`ReplayTable` in file order (``rate`` rows/s, ``None``: as fast as possible).

    Use :meth:`run`; it returns the simulator's summary plus the replay's own counts (``rows``,
    ``unlabelled``, ``generated_ids``, ``event_times``, ``data``)."""

    def __init__(self, settings: Settings, table: ReplayTable, rate: float | None = None, label_delay: float = 2.0,
                 labels: bool = True, batch: int = 1, timeout_s: float = 30.0, producer: Any = None,
                 progress: IO[str] | None = None) -> None:
        options = PublishOptions(count=len(table), rate=rate, label_delay=label_delay,
                                 labels=labels and table.label is not None, batch=batch, timeout_s=timeout_s)
        super().__init__(settings, options, producer=producer, progress=progress)
        self.table = table

    def _publish_slice(self, start: int, n: int) -> None:
        t = self.table
        payloads = [orjson.dumps(r) for r in t.records(start, n)]
        tids = t.transaction_ids[start:start + n]
        try:
            parts = self._partitions(self.settings.topic_transactions, tids)
        except Exception as e:  # noqa: BLE001 - no metadata: nothing of this slice can be delivered
            self._abort(self.settings.topic_transactions, "transactions", n, e)
            return
        if not self._send_transactions([k.encode() for k in tids.tolist()], payloads, parts):
            return
        if self.options.labels:
            y = t.labels[start:start + n]
            keep = y >= 0
            if keep.any():
                self._queue_labels(tids[keep], y[keep].tolist())

    def _summary(self, send_seconds: float, seconds: float) -> dict[str, Any]:
        t = self.table
        summary = super()._summary(send_seconds, seconds)
        for k in ("seed", "scenarios", "first_index"):
            summary.pop(k, None)
        summary.update(data=t.source, rows=len(t), unlabelled=t.unlabelled if self.options.labels else len(t),
                       generated_ids=t.generated_ids, event_times=t.event_times, label_column=t.label,
                       event_time_column=t.event_time)
        return summary
