"""The vectorised PaySim generator: columnar batches, deterministic in ``(seed, event index)``.

Events are produced in fixed chunks of :data:`CHUNK` indices, each from its own generator
``np.random.default_rng([seed, chunk_no])``, so ``[0, N)`` in one call and in any cut of calls give the
same rows. Within a chunk:

* genuine rows draw a type (PaySim shares), a two-piece log-normal amount, an origin balance (zero for
  about half of TRANSFER/CASH_OUT origins, PaySim's best-known quirk) and a destination: a merchant
  (``M...``, zero balances) for PAYMENT, otherwise a customer account from a pool whose balances are
  bookkept across the chunk (``oldbalanceDest`` before the event, ``newbalanceDest`` at the end of the
  step, as PaySim records it);
* account take-overs (PaySim's fraud) occupy slots of 16 indices: a fraudster TRANSFERs the victim's
  balance to a fresh mule in pieces of at most 10,000,000 (the victim's balances are bookkept across
  the pieces), and after each piece the mule CASH_OUTs it. The mule's TRANSFER-side balances are
  recorded 0/0 (PaySim's quirk).

>>> cols = generate(5, seed=1)
>>> list(cols)[:4], cols["transaction_id"][:2].tolist()
(['transaction_id', 'step', 'type', 'amount'], ['tx-1-0', 'tx-1-1'])
>>> bool((generate(3, seed=1, start_index=2)["amount"] == cols["amount"][2:]).all())
True
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from simulator.paysim import (AMOUNT_PARAMS, EVENTS_PER_STEP, FRAUD_BALANCE_MEDIAN, FRAUD_BALANCE_SIGMA,
                              FRAUD_RATE_TRANSFER, MAX_CHAIN, TRANSFER_LIMIT, TYPE_SHARES, TYPES, StepClock,
                              expected_fraud_transfers)
from simulator.scenarios import JSON_FIELDS, Scenario, ScheduledScenario, schedule

__all__ = ["CHUNK", "SLOT", "DEFAULT_START_TIME", "TransactionGenerator", "generate", "concat_columns"]

CHUNK = 65536
SLOT = 16
#: Event time of step 1 in files: 2026-01-01T00:00:00Z.
DEFAULT_START_TIME = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc).timestamp()

_CODE = {t: i for i, t in enumerate(TYPES)}
CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER = (_CODE[t] for t in TYPES)
_TYPE_NAMES = np.array(TYPES)
_MEDIAN, _SIG_LO, _SIG_HI, _CAP = (np.array([AMOUNT_PARAMS[t][i] for t in TYPES]) for i in range(4))
# Origin balances: share of zero balances per type and median of the others. About 47% of genuine
# TRANSFER/CASH_OUT origins have 0 before and after although money moves (PaySim1: 47.4%).
_ORIG_ZERO = np.array([0.05, 0.45, 0.30, 0.33, 0.55])
_ORIG_MEDIAN = np.array([1_500_000.0, 6_000.0, 40_000.0, 30_000.0, 6_000.0])
_ORIG_SIGMA = 1.5
# Customer destination pool per chunk: each account receives ~4 events per chunk (PaySim1: ~7 a month).
_POOL_SHARE = 0.12
_POOL_ZERO = 0.30
_POOL_MEDIAN, _POOL_SIGMA = 600_000.0, 1.4
_GENUINE_DEST_ZERO = 0.0006   # genuine TRANSFER/CASH_OUT rows with destination 0/0 (PaySim1: 0.06%)
_FRAUD_DEST_ZERO = 0.97       # fraud TRANSFERs whose mule balances are recorded 0/0
_FLAG_THRESHOLD, _FLAG_RATE = 200_000.0, 0.006  # PaySim's flag: 16 of ~2,700 large fraud transfers
_SLOT_Q = FRAUD_RATE_TRANSFER * TYPE_SHARES["TRANSFER"] * SLOT / expected_fraud_transfers()


def _names(prefix: np.ndarray | str, ids: np.ndarray) -> np.ndarray:
    return np.strings.add(prefix, ids.astype("U10"))


def concat_columns(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate columnar batches with the same columns."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Draws(NamedTuple):
    """Every random draw of one chunk. Each has a fixed shape whatever the scenarios (a scenario changes only
    what it uses), and :meth:`of` draws them in one fixed order: that order is the seeded stream."""
    u_type: np.ndarray
    z_amount: np.ndarray
    u_zero: np.ndarray
    z_bal: np.ndarray
    orig_id: np.ndarray
    merchant_id: np.ndarray
    dest_pick: np.ndarray
    u_dest_zero: np.ndarray
    pool_id: np.ndarray
    u_pool_zero: np.ndarray
    z_pool: np.ndarray
    u_slot: np.ndarray
    z_victim: np.ndarray
    u_offset: np.ndarray
    victim_id: np.ndarray
    mule_id: np.ndarray
    u_flag: np.ndarray
    u_mule_zero: np.ndarray

    @classmethod
    def of(cls, rng: np.random.Generator) -> "_Draws":
        n, n_slots, n_pool = CHUNK, CHUNK // SLOT, int(CHUNK * _POOL_SHARE)
        ids = (10 ** 8, 2 ** 31)
        return cls(rng.random(n), rng.standard_normal(n), rng.random(n), rng.standard_normal(n),
                   rng.integers(*ids, n), rng.integers(*ids, n), rng.integers(0, n_pool, n), rng.random(n),
                   rng.integers(*ids, n_pool), rng.random(n_pool), rng.standard_normal(n_pool),
                   rng.random(n_slots), rng.standard_normal(n_slots), rng.random(n_slots),
                   rng.integers(*ids, n_slots), rng.integers(*ids, n_slots), rng.random(n_slots), rng.random(n_slots))


@dataclass
class _Rows:
    """The per-row columns of a chunk while it is built: genuine first, then take-overs written over them.
    ``dest_slot`` is the destination's pool account, -1 for a merchant, -2 for a mule."""
    ttype: np.ndarray
    amount: np.ndarray
    name_orig: np.ndarray
    old_orig: np.ndarray
    new_orig: np.ndarray
    is_fraud: np.ndarray
    flagged: np.ndarray
    dest_slot: np.ndarray
    dest_zero: np.ndarray


class TransactionGenerator:
    """PaySim transactions for any range of event indices, with scenarios applied.

    Parameters
    ----------
    seed
        Non-negative integer; the same seed gives the same rows.
    scenarios
        Scheduled scenarios (or ``"name:k=v"`` strings, active from index 0).
    start_time
        Event time of step 1 (UTC epoch seconds).
    events_per_step
        Mean events per one-hour step (see :class:`simulator.paysim.StepClock`).

    >>> g = TransactionGenerator(seed=3)
    >>> b = g.batch(70000, 4)
    >>> b["transaction_id"].tolist()
    ['tx-3-70000', 'tx-3-70001', 'tx-3-70002', 'tx-3-70003']
    """

    def __init__(self, seed: int, scenarios: Sequence[ScheduledScenario | str] = (),
                 start_time: float = DEFAULT_START_TIME, events_per_step: int = EVENTS_PER_STEP) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not np.isfinite(start_time):
            raise ValueError(f"start_time must be a finite epoch time, got {start_time!r}")
        self.seed = int(seed)
        self.scenarios = schedule(scenarios)
        self.start_time = float(start_time)
        self.clock = StepClock(events_per_step)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    # -- public -----------------------------------------------------------------------------------
    def batch(self, start_index: int, count: int) -> dict[str, np.ndarray]:
        """Columns of events ``start_index .. start_index + count - 1``."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        if start_index < 0:
            raise ValueError(f"start_index must be >= 0, got {start_index!r}")
        parts = []
        lo, hi = start_index, start_index + count
        for chunk_no in range(lo // CHUNK, (hi - 1) // CHUNK + 1 if count else lo // CHUNK + 1):
            cols = self.chunk(chunk_no)
            a, b = max(lo - chunk_no * CHUNK, 0), min(hi - chunk_no * CHUNK, CHUNK)
            parts.append({k: v[a:b] for k, v in cols.items()})
        return concat_columns(parts)

    def clock_lag(self, index: np.ndarray) -> np.ndarray:
        """Seconds of event-time lag per index from active ``stale_clock`` scenarios."""
        lag = np.zeros(len(index))
        for s in self.scenarios:
            if s.scenario.clock_lag():
                lag[s.active(index)] += s.scenario.clock_lag()
        return lag

    def chunk(self, chunk_no: int) -> dict[str, np.ndarray]:
        """All :data:`CHUNK` rows of one chunk (the last two chunks are cached)."""
        cols = self._cache.get(chunk_no)
        if cols is None:
            cols = self._generate_chunk(chunk_no)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[chunk_no] = cols
        return cols

    # -- generation -------------------------------------------------------------------------------
    def _active(self, index: np.ndarray, hook: str) -> list[tuple[ScheduledScenario, np.ndarray]]:
        lo, hi = int(index[0]), int(index[-1]) + 1
        out = []
        for s in self.scenarios:
            if s.overlaps(lo, hi) and getattr(s.scenario, hook)() not in (None, 1.0, 0.0):
                out.append((s, s.active(index)))
        return out

    def _generate_chunk(self, chunk_no: int) -> dict[str, np.ndarray]:
        index = chunk_no * CHUNK + np.arange(CHUNK, dtype=np.int64)
        d = _Draws.of(np.random.default_rng([self.seed, chunk_no]))
        rows = self._genuine_rows(index, d)
        mule_name = self._take_overs(index, d, rows)
        name_dest, old_dest, new_dest = self._destinations(index, d, rows, mule_name)
        cols = {
            "transaction_id": np.strings.add(f"tx-{self.seed}-", index.astype("U20")),
            "step": self.clock.steps(index),
            "type": _TYPE_NAMES[rows.ttype],
            "amount": rows.amount,
            "nameOrig": rows.name_orig,
            "oldbalanceOrg": rows.old_orig,
            "newbalanceOrig": np.round(rows.new_orig, 2),
            "nameDest": name_dest,
            "oldbalanceDest": np.round(old_dest, 2),
            "newbalanceDest": np.round(new_dest, 2),
            "isFraud": rows.is_fraud,
            "isFlaggedFraud": rows.flagged,
            "event_time": self.clock.event_times(index, self.start_time),
        }
        assert tuple(cols) == JSON_FIELDS
        self._apply_columnar(cols, index)
        return cols

    def _genuine_rows(self, index: np.ndarray, d: _Draws) -> _Rows:
        """Every row as a genuine transaction: type (scenario shares where active), amount, origin balances
        and where the money goes (a pool slot, or -1 for a merchant)."""
        n = index.size
        cdf = np.cumsum([TYPE_SHARES[t] for t in TYPES])
        ttype = np.minimum(np.searchsorted(cdf / cdf[-1], d.u_type, side="right"), len(TYPES) - 1)
        for s, mask in self._active(index, "type_shares"):
            shares = s.scenario.type_shares()
            c = np.cumsum([shares[t] for t in TYPES])
            ttype[mask] = np.minimum(np.searchsorted(c / c[-1], d.u_type[mask], side="right"), len(TYPES) - 1)
        sigma = np.where(d.z_amount < 0, _SIG_LO[ttype], _SIG_HI[ttype])
        amount = np.round(np.clip(_MEDIAN[ttype] * np.exp(sigma * d.z_amount), 0.1, _CAP[ttype]), 2)
        old_orig = np.where(d.u_zero < _ORIG_ZERO[ttype], 0.0,
                            np.round(_ORIG_MEDIAN[ttype] * np.exp(_ORIG_SIGMA * d.z_bal), 2))
        # A genuine account is never emptied to the cent: that exactness is the fraudster's signature.
        old_orig = np.where(old_orig == amount, old_orig + 0.01, old_orig)
        new_orig = np.where(ttype == CASH_IN, old_orig + amount, np.where(old_orig >= amount, old_orig - amount, 0.0))
        return _Rows(ttype=ttype, amount=amount, name_orig=_names("C", d.orig_id), old_orig=old_orig,
                     new_orig=new_orig, is_fraud=np.zeros(n, dtype=np.int8), flagged=np.zeros(n, dtype=np.int8),
                     # -1: merchant; -2: mule (outside the pool)
                     dest_slot=np.where(ttype == PAYMENT, -1, d.dest_pick),
                     dest_zero=(d.u_dest_zero < _GENUINE_DEST_ZERO) & ((ttype == TRANSFER) | (ttype == CASH_OUT)))

    def _take_overs(self, index: np.ndarray, d: _Draws, rows: _Rows) -> np.ndarray | None:
        """Account take-overs (the fraud) written over the genuine rows of their slots; returns the mule's
        name per row (set on the TRANSFER rows), or ``None`` if the chunk has no take-over."""
        q = np.full(d.u_slot.size, _SLOT_Q)
        for s, mask in self._active(index[::SLOT], "fraud_factor"):
            q[mask] *= s.scenario.fraud_factor()
        ep = np.flatnonzero(d.u_slot < np.minimum(q, 1.0))
        if not ep.size:
            return None
        balance = np.round(np.minimum(FRAUD_BALANCE_MEDIAN * np.exp(FRAUD_BALANCE_SIGMA * d.z_victim[ep]),
                                      MAX_CHAIN * TRANSFER_LIMIT), 2)
        k = np.ceil(balance / TRANSFER_LIMIT).astype(np.int64)
        first = ep * SLOT + np.floor(d.u_offset[ep] * (SLOT - 2 * k + 1)).astype(np.int64)
        e = np.repeat(np.arange(ep.size), k)
        j = np.arange(e.size) - np.repeat(np.cumsum(k) - k, k)
        pt = first[e] + 2 * j                     # TRANSFER rows; the CASH_OUT follows at pt + 1
        old_t = np.round(balance[e] - j * TRANSFER_LIMIT, 2)
        amt = np.minimum(old_t, TRANSFER_LIMIT)
        blocked = (k[e] == 1) & (amt > _FLAG_THRESHOLD) & (d.u_flag[ep][e] < _FLAG_RATE)
        victim, mule = _names("C", d.victim_id[ep][e]), _names("C", d.mule_id[ep][e])
        rows.ttype[pt], rows.amount[pt], rows.name_orig[pt] = TRANSFER, amt, victim
        rows.old_orig[pt] = old_t
        rows.new_orig[pt] = np.where(blocked, old_t, np.round(old_t - amt, 2))
        rows.is_fraud[pt], rows.flagged[pt] = 1, blocked
        rows.dest_slot[pt], rows.dest_zero[pt] = -2, d.u_mule_zero[ep][e] < _FRAUD_DEST_ZERO
        pc = (pt + 1)[~blocked]                   # a blocked transfer leaves the mule nothing to cash out
        amt_c = amt[~blocked]
        rows.ttype[pc], rows.amount[pc], rows.name_orig[pc] = CASH_OUT, amt_c, mule[~blocked]
        rows.old_orig[pc], rows.new_orig[pc] = amt_c, 0.0
        rows.is_fraud[pc], rows.flagged[pc] = 1, 0
        rows.dest_slot[pc], rows.dest_zero[pc] = d.dest_pick[pc], False
        mule_name = np.empty(index.size, dtype=mule.dtype)
        mule_name[pt] = mule
        return mule_name

    def _destinations(self, index: np.ndarray, d: _Draws, rows: _Rows, mule_name: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Destination names and balances: merchants, mules, and the bookkept customer pool."""
        old_dest, new_dest = self._bookkeep(rows.ttype, rows.amount, rows.dest_slot, index, d.u_pool_zero, d.z_pool,
                                            d.pool_id)
        is_mule = rows.dest_slot == -2
        # A mule is a fresh account, emptied by its cash-out after every transfer.
        old_dest[is_mule], new_dest[is_mule] = 0.0, rows.amount[is_mule]
        old_dest[rows.dest_zero], new_dest[rows.dest_zero] = 0.0, 0.0
        dest_ids = np.where(rows.dest_slot >= 0, d.pool_id[np.maximum(rows.dest_slot, 0)], d.merchant_id)
        name_dest = _names(np.where(rows.dest_slot == -1, "M", "C"), dest_ids)
        if mule_name is not None:
            name_dest[is_mule] = mule_name[is_mule]
        return name_dest, old_dest, new_dest

    def _bookkeep(self, ttype, amount, dest_slot, index, u_pool_zero, z_pool, pool_id):
        """Balances of pool accounts: before each event, and at the end of its step (PaySim's record).

        Each account's history within the chunk starts at a random one of its events and runs cyclically
        (its balance resets there once per chunk). Starting every account at the chunk's first event
        instead would make balances grow through each chunk, so a calm stream would look drifted at
        every chunk boundary; with a random start the balance an event sees does not depend on where in
        the chunk it falls.
        """
        n = len(ttype)
        old = np.zeros(n)
        new = np.zeros(n)
        rows = np.flatnonzero(dest_slot >= 0)
        acct = dest_slot[rows]
        initial = np.where(u_pool_zero < _POOL_ZERO, 0.0, _POOL_MEDIAN * np.exp(_POOL_SIGMA * z_pool))
        # Cash-in agents pay cash out of their balance; every other type credits the destination.
        flow = np.where(ttype[rows] == CASH_IN, -amount[rows], amount[rows])
        step = self.clock.steps(index[rows])
        order = np.lexsort((rows, acct))          # by account, then by event index
        a, f, st = acct[order], flow[order], step[order]
        if a.size == 0:
            return old, new
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        counts = np.diff(np.r_[starts, a.size])
        first = np.repeat(starts, counts)                              # first row of each account's run
        pos = np.arange(a.size) - first                                # position within the account
        cs = np.cumsum(f)
        prefix = cs - f - (cs[first] - f[first])                       # flows of the account before this event
        total = np.repeat(np.add.reduceat(f, starts), counts)
        # the account's cyclic start: a deterministic uniform from its id (no draw from the generator)
        phase = np.floor(((pool_id[a[starts]].astype(np.float64) * 0.6180339887498949) % 1.0) * counts)
        r = np.repeat(phase.astype(np.int64), counts)
        p_r = prefix[first + r]
        before = np.where(pos >= r, prefix - p_r, total - p_r + prefix)
        # end of the event's step: the balance after the account's last event in the same step (cyclically
        # a run never crosses the account's start)
        run_end = np.r_[(a[1:] != a[:-1]) | (st[1:] != st[:-1]), True] | np.r_[(pos[1:] == r[1:]), False]
        last = np.minimum.accumulate(np.where(run_end, np.arange(a.size), a.size)[::-1])[::-1]
        through_step = before[last] + f[last]
        # Agents never go negative: an account whose cash-ins would overdraw it starts with enough float
        # (plus 25%), so a genuine destination is never reported 0/0 by accident.
        lowest = np.minimum.reduceat(np.minimum(before, before + f), starts)
        floor = np.zeros(len(initial))
        floor[a[starts]] = np.maximum(-lowest, 0.0) * 1.25
        bal0 = np.maximum(initial, floor)[a]
        old[rows[order]] = np.maximum(bal0 + before, 0.0)
        new[rows[order]] = np.maximum(bal0 + through_step, 0.0)
        return old, new

    def _apply_columnar(self, cols: dict[str, np.ndarray], index: np.ndarray) -> None:
        for s in self.scenarios:
            lag = s.scenario.clock_lag()
            if not s.overlaps(int(index[0]), int(index[-1]) + 1):
                continue
            rows = np.flatnonzero(s.active(index))
            if lag:
                cols["event_time"][rows] -= lag
            if type(s.scenario).transform is not Scenario.transform:
                u, v = s.uniforms(self.seed, index[rows])
                s.scenario.transform(cols, rows, u, v)


def generate(count: int, seed: int, start_index: int = 0, scenarios: Sequence[ScheduledScenario | str] = (),
             start_time: float = DEFAULT_START_TIME, events_per_step: int = EVENTS_PER_STEP) -> dict[str, np.ndarray]:
    """``count`` PaySim transactions from event ``start_index``, as columns (labels included).

    Columns (in order): transaction_id, step, type, amount, nameOrig, oldbalanceOrg, newbalanceOrig,
    nameDest, oldbalanceDest, newbalanceDest, isFraud, isFlaggedFraud, event_time. Columnar scenarios
    (amount_scale, type_mix, stale_clock, fraud_burst, balance_corruption) are applied here; the
    encode-time ones (missing_fields, schema_break, malformed) by :func:`simulator.encode.encode_events`.

    >>> c = generate(1000, seed=0)
    >>> sorted(set(c["type"].tolist()))
    ['CASH_IN', 'CASH_OUT', 'DEBIT', 'PAYMENT', 'TRANSFER']
    >>> bool((c["oldbalanceDest"][c["type"] == "PAYMENT"] == 0).all())
    True
    """
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    return TransactionGenerator(seed, scenarios, start_time, events_per_step).batch(int(start_index), int(count))
