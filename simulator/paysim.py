"""PaySim's published statistics as constants, and the step clock that maps an event index to an hour.

The numbers come from the public PaySim1 data set (Lopez-Rojas, Elmir and Axelsson, 2016; 6,362,620
rows over 743 one-hour steps). The generator in :mod:`simulator.generator` is calibrated against them
and ``tests/test_simulator.py`` checks it on a million events.

>>> clock = StepClock()
>>> clock.steps(np.array([0, clock.events_per_cycle - 1, clock.events_per_cycle]))
array([  1, 744,   1])
>>> clock.event_times(np.array([0]), start_time=0.0)
array([0.])
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "TYPES", "TYPE_SHARES", "AMOUNT_PARAMS", "FRAUD_RATE_TRANSFER", "FRAUD_RATE_CASH_OUT",
    "TRANSFER_LIMIT", "STEPS", "EVENTS_PER_STEP", "HOURLY_PROFILE", "StepClock", "expected_fraud_transfers",
    "FRAUD_BALANCE_MEDIAN", "FRAUD_BALANCE_SIGMA", "MAX_CHAIN",
]

#: Transaction types in the order used for integer codes.
TYPES: tuple[str, ...] = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
#: PaySim1 type shares (1,399,284 / 2,237,500 / 41,432 / 2,151,495 / 532,909 rows).
TYPE_SHARES: dict[str, float] = {"CASH_IN": 0.2199, "CASH_OUT": 0.3517, "DEBIT": 0.0065,
                                 "PAYMENT": 0.3381, "TRANSFER": 0.0838}

#: Two-piece log-normal amounts per type: (median, sigma below the median, sigma above it, cap).
#: Medians and quartiles follow PaySim1's per-type quartiles; PAYMENT is capped as in PaySim1, whose
#: largest payment is 238,638. The mixture gives the overall Q1/median/Q3 of 13,390 / 74,872 / 208,722.
AMOUNT_PARAMS: dict[str, tuple[float, float, float, float]] = {
    "CASH_IN": (151_000.0, 1.15, 0.70, 10_000_000.0),
    "CASH_OUT": (155_000.0, 1.15, 0.70, 10_000_000.0),
    "DEBIT": (3_050.0, 1.00, 0.95, 600_000.0),
    "PAYMENT": (9_480.0, 1.14, 0.70, 238_638.0),
    "TRANSFER": (486_300.0, 1.20, 1.05, 92_445_516.0),
}

#: Fraud rates within each type in PaySim1 (4,097 of 532,909 transfers; 4,116 of 2,237,500 cash-outs).
FRAUD_RATE_TRANSFER = 0.00769
FRAUD_RATE_CASH_OUT = 0.00184
#: PaySim's per-transaction transfer limit: a fraudster empties a richer account in several transfers.
TRANSFER_LIMIT = 10_000_000.0
#: Victim balances (log-normal). PaySim1 fraud amounts: median ~441k, mean ~1.47M, 3.5% at the limit.
FRAUD_BALANCE_MEDIAN = 400_000.0
FRAUD_BALANCE_SIGMA = 1.55
#: Longest take-over chain (transfers of one victim); balances above MAX_CHAIN * limit are capped.
MAX_CHAIN = 7

STEPS = 744
#: PaySim1 rows per step on average (6,362,620 / 744).
EVENTS_PER_STEP = 8552
#: Relative volume by hour of day (step 1 = 00:00-01:00), the shape of PaySim1's first days:
#: quiet nights, a morning ramp and an evening peak.
HOURLY_PROFILE: tuple[float, ...] = (
    2708, 1014, 552, 565, 665, 1660, 6837, 21097, 37628, 35991, 37241, 36153,
    37515, 41485, 44609, 42471, 38540, 40326, 51352, 40625, 19184, 12635, 8227, 4512)


def expected_fraud_transfers() -> float:
    """Mean number of TRANSFERs per take-over: ``E[min(ceil(B / limit), MAX_CHAIN)]`` for victim balance B.

    >>> 1.0 < expected_fraud_transfers() < 1.1
    True
    """
    def above(x: float) -> float:
        return 0.5 * math.erfc(math.log(x / FRAUD_BALANCE_MEDIAN) / (FRAUD_BALANCE_SIGMA * math.sqrt(2)))
    return 1.0 + sum(above(j * TRANSFER_LIMIT) for j in range(1, MAX_CHAIN))


class StepClock:
    """Maps an event index to a PaySim step (hour 1..744) and an event time, with PaySim's daily rhythm.

    Index ``i`` falls in the step whose cumulative volume covers it: each step holds
    ``events_per_step * HOURLY_PROFILE[hour] / mean(HOURLY_PROFILE)`` events, so one 744-step cycle holds
    about ``744 * events_per_step`` events. Later indices start a new cycle (step 1 again) whose event
    times continue after the previous one, so event time always increases with the index.

    Parameters
    ----------
    events_per_step
        Mean events per one-hour step (default: PaySim1's 8,552).
    """

    def __init__(self, events_per_step: int = EVENTS_PER_STEP) -> None:
        if not isinstance(events_per_step, (int, np.integer)) or events_per_step < 1:
            raise ValueError(f"events_per_step must be an integer >= 1, got {events_per_step!r}")
        self.events_per_step = int(events_per_step)
        profile = np.asarray(HOURLY_PROFILE, dtype=float)
        per_hour = events_per_step * profile / profile.mean()
        counts = np.maximum(1, np.round(np.resize(per_hour, STEPS))).astype(np.int64)
        self._counts = counts
        self._ends = np.cumsum(counts)
        self._starts = self._ends - counts
        self.events_per_cycle = int(self._ends[-1])

    def _locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        cycle, within = np.divmod(index, self.events_per_cycle)
        step0 = np.searchsorted(self._ends, within, side="right")
        return cycle, step0, within

    def steps(self, index: np.ndarray) -> np.ndarray:
        """PaySim step (1..744) of each event index."""
        return self._locate(index)[1] + 1

    def event_times(self, index: np.ndarray, start_time: float) -> np.ndarray:
        """UTC epoch seconds: ``start_time + (step-1)*3600 + offset`` with events spread evenly in the hour."""
        cycle, step0, within = self._locate(index)
        offset = (within - self._starts[step0]) / self._counts[step0] * 3600.0
        return start_time + (cycle * STEPS + step0) * 3600.0 + np.round(offset, 3)
