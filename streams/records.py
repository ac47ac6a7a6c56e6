"""What crosses the worker's stages: the Kafka record they read and the :class:`Outcome` they hand over.

An :class:`Outcome` is the delivery object of one micro-batch: every output record with the input
partition it goes to. The agents give it to :class:`streams.delivery.Shipper`, which publishes it and acks
the batch's input events once all of it is on the broker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Message", "Msg", "Outcome", "PARTIALS_KEY", "Record"]

#: One output record: (key, value).
Record = tuple[bytes | None, bytes]

#: The key of every drift.partials record: one key, so every partial reaches the same aggregator, which
#: publishes the windows in order.
PARTIALS_KEY = b"drift-partials"


class Message(Protocol):
    """The parts of a Kafka record the stages read (Faust's ``Message`` and :class:`Msg` have them)."""
    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


@dataclass
class Msg:
    """A plain record, for tests and tools that do not go through Faust (timestamps in seconds)."""
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: float = field(default_factory=time.time)


@dataclass
class Outcome:
    """The outputs of one micro-batch: one score message per transaction message, one dead letter per event
    that cannot be scored, the window partials that closed; ``reasons`` counts the dead letters by reason."""
    scores: list[Record] = field(default_factory=list)
    dead_letters: list[Record] = field(default_factory=list)
    partials: list[Record] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    score_partitions: list[int] = field(default_factory=list)        # input partition of each score record
    dead_letter_partitions: list[int] = field(default_factory=list)  # and of each dead letter
    shadow_scores: list[Record] = field(default_factory=list)        # the challenger's, for scores.shadow
    shadow_partitions: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.scores or self.dead_letters or self.partials or self.shadow_scores)
